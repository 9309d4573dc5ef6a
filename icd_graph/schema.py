"""The DuckDB schema of a knowledge-base file. `build` is its only writer."""

SCHEMA_VERSION = 1

DDL = """
CREATE TABLE release (
    name VARCHAR,             -- e.g. 'ICD-10-CM April 1 2026'
    fiscal_year INTEGER,      -- tabular <version>
    schema_version INTEGER,
    built_at TIMESTAMP,
    tool_version VARCHAR
);
CREATE TABLE source_files (
    kind VARCHAR,             -- tabular | index | eindex | neoplasm | drug | index_csv
    file_name VARCHAR,
    sha256 VARCHAR,
    version VARCHAR           -- the file's own <version>, when it has one
);
-- Every tabular node. Codes are dotted and upper case ('E11.9', 'S72.001A');
-- chapters are 'CH01'..'CH22', blocks their range ('E08-E13').
CREATE TABLE nodes (
    code VARCHAR PRIMARY KEY,
    kind VARCHAR,             -- chapter | block | category | subcategory | code
    description VARCHAR,
    parent VARCHAR,           -- NULL for chapters
    depth INTEGER,            -- chapter 0, block 1, category 2, ...
    billable BOOLEAN,
    chapter VARCHAR,
    block VARCHAR,
    seq INTEGER               -- document order
);
-- Transitive closure of the hierarchy, distance >= 1.
CREATE TABLE ancestors (
    code VARCHAR,
    ancestor VARCHAR,
    distance INTEGER
);
-- Instructional notes as written at the node that carries them.
-- kind: inclusion_term | includes | excludes1 | excludes2 | code_first |
--       use_additional_code | code_also | note | seventh_character_note | seventh_character
-- For kind = 'seventh_character', text is 'A: initial encounter for closed fracture'.
CREATE TABLE notes (
    code VARCHAR,
    kind VARCHAR,
    text VARCHAR,
    seq INTEGER
);
-- Alphabetic index, external-cause index, neoplasm and drug tables as one term tree.
CREATE TABLE index_terms (
    id INTEGER PRIMARY KEY,
    source VARCHAR,           -- index | eindex | neoplasm | drug
    parent_id INTEGER,        -- NULL for a main term
    level INTEGER,            -- 0 = main term
    title VARCHAR,            -- without nonessential modifiers
    nemod VARCHAR,            -- nonessential modifiers, e.g. '(-astasia) (hysterical)'
    path VARCHAR,             -- titles from the main term down, joined by ', '
    code VARCHAR,             -- as printed in the index, e.g. 'E11.31-' (NULL if none)
    manif VARCHAR,            -- manifestation code printed in [brackets]
    see VARCHAR,
    see_also VARCHAR
);
-- Table of Neoplasms and Table of Drugs cells.
CREATE TABLE table_cells (
    term_id INTEGER,
    table_name VARCHAR,       -- neoplasm | drug
    column_no INTEGER,
    column_name VARCHAR,      -- e.g. 'Malignant Primary', 'Adverse effect'
    code VARCHAR              -- as printed ('C79.8-', '--' cells are not stored)
);
-- Each code printed in the index or tables, resolved against the tabular list.
-- status: billable | completed (incomplete '-' or now a parent: code is a billable descendant)
--         | unknown (not in the tabular: code is NULL)
CREATE TABLE index_codes (
    raw_code VARCHAR,
    code VARCHAR,
    status VARCHAR
);
-- Undirected edges of the expansion graph.
-- kind: hierarchy | index_path | see
CREATE TABLE graph_edges (
    a VARCHAR,
    b VARCHAR,
    kind VARCHAR
);
CREATE TABLE build_report (
    item VARCHAR,
    count INTEGER
);
"""
