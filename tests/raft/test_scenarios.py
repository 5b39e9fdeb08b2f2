"""Protocol scenarios as readable scripts with checked-in traces (STYLE.md rule 12).

Each ``testdata/*.txt`` holds commands and the trace they must produce. After an intended
change of behaviour, regenerate the traces and read the diff:

    KV_REWRITE=1 .venv/bin/python -m pytest tests/raft/test_scenarios.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kvcluster.testing.interaction import run_script

DATA = Path(__file__).parent / "testdata"
SCRIPTS = sorted(DATA.glob("*.txt"))


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_scenario(path: Path) -> None:
    text = path.read_text()
    got = run_script(text)
    if os.environ.get("KV_REWRITE"):
        path.write_text(got)
        return
    assert got == text, f"trace of {path.name} changed; rerun with KV_REWRITE=1 and read the diff"


def test_scripts_exist() -> None:
    assert len(SCRIPTS) >= 8
