"""The README's medical tables are those `experiments/results/medical/tables.py` writes from the committed runs."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "experiments" / "results" / "medical" / "tables.py"


def test_the_readme_tables_are_those_of_the_committed_runs():
    spec = importlib.util.spec_from_file_location("medical_tables", SCRIPT)
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    text = tables.README.read_text()
    start, end = tables.readme_block(text)
    block = text[start:end]
    assert "| **pooled, seeds" in block and block == f"\n{tables.tables()}\n", f"stale: run python {SCRIPT}"
