"""README's (and BENCHMARKS.md's) demo table is the one stored in benchmarks/results/demo.json, cell for cell."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULT = ROOT / "benchmarks" / "results" / "demo.json"


def _cells(text: str) -> list[list[str]]:
    """The data rows of a rich table (lines framed by '│'), as lists of stripped cells."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in text.splitlines()
        if line.strip().startswith("│")
    ]


def _demo_block(document: str = "README.md", heading: str = "## What the demo shows") -> str:
    section = (ROOT / document).read_text().split(heading, 1)[1]
    match = re.search(r"```\n(.*?)```", section, re.DOTALL)
    assert match, f"{document}'s demo section has no fenced table"
    return match.group(1)


def test_readme_demo_table_matches_the_committed_result():
    from rich.console import Console

    from mobileprune.cli.demo import comparison_table

    stored = json.loads(RESULT.read_text())
    assert stored["kind"] == "full" and stored["machine"]["command"] == "python -m benchmarks.demo"
    assert not stored["machine"]["git"].endswith("+dirty"), "demo.json was written from an uncommitted tree"
    buffer = io.StringIO()
    Console(file=buffer, width=200).print(comparison_table(stored["results"]["rows"]))
    expected = _cells(buffer.getvalue())
    assert len(expected) == 6
    for document, heading in (("README.md", "## What the demo shows"), ("BENCHMARKS.md", "## The demo\n")):
        assert _cells(_demo_block(document, heading)) == expected, (
            f"{document}'s demo table differs from benchmarks/results/demo.json; paste the output of "
            "python -m benchmarks.demo --show"
        )


def test_readme_names_the_command_commit_and_load_of_the_stored_run():
    stored = json.loads(RESULT.read_text())
    section = (ROOT / "README.md").read_text().split("## What the demo shows", 1)[1].split("\n## ", 1)[0]
    machine = stored["machine"]
    assert "python -m benchmarks.demo" in section
    assert machine["git"] in section
    assert f"load average {machine['load_average'][0]}" in section
