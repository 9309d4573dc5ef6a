import networkx as nx

from icd_graph.graph import neighbours


def test_neighbours_at_exact_distance():
    graph = nx.Graph([("E11", "E11.9"), ("E11", "E11.8"), ("E11.9", "I10"), ("I10", "I11")])
    assert neighbours(graph, "E11.9", 1) == {"E11", "I10"}
    assert neighbours(graph, "E11.9", 2) == {"E11.8", "I11"}
    assert neighbours(graph, "Z00", 1) == set()
