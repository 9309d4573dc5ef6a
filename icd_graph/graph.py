"""The expansion graph: an undirected networkx Graph over `graph_edges` (hierarchy, index_path
and see edges), loaded with one fetch the first time a knowledge-base file asks for it and then
shared by every caller in the process."""

from __future__ import annotations

import threading
import duckdb

_graphs: dict[object, object] = {}
_lock = threading.Lock()


def load_graph(con: duckdb.DuckDBPyConnection, key: object):
    """The graph of the knowledge base open in `con`, cached under `key` (its file and mtime)."""
    with _lock:
        graph = _graphs.get(key)
        if graph is None:
            import networkx as nx

            graph = nx.Graph()
            graph.add_edges_from(con.execute("SELECT a, b FROM graph_edges").fetchall())
            _graphs[key] = graph
        return graph


def neighbours(graph, code: str, distance: int) -> set[str]:
    """Nodes at exactly `distance` hops from `code` (1: adjacent; 2: adjacent to an adjacent node
    but neither adjacent to `code` nor `code` itself)."""
    if code not in graph:
        return set()
    import networkx as nx

    lengths = nx.single_source_shortest_path_length(graph, code, cutoff=distance)
    return {node for node, hops in lengths.items() if hops == distance}
