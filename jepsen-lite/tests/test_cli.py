"""The command line: exit codes, the JSON verdict on the last line, errors on stderr."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from jepsen_lite.cli import main


def write(path: Path, rows: Sequence[tuple[int, str, str, object]], key: str = "x") -> Path:
    lines = [
        json.dumps({"process": p, "type": t, "f": f, "key": key, "value": v, "time": i})
        for i, (p, t, f, v) in enumerate(rows)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


VALID = [
    (0, "invoke", "write", 1),
    (0, "ok", "write", 1),
    (1, "invoke", "read", None),
    (1, "ok", "read", 1),
]
INVALID = [
    (0, "invoke", "write", 1),
    (0, "ok", "write", 1),
    (1, "invoke", "read", None),
    (1, "ok", "read", 7),
]


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def last_json(result: Result) -> dict[str, object]:
    verdict: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return verdict


def test_valid_history_exits_0(tmp_path: Path) -> None:
    result = run("check", str(write(tmp_path / "h.jsonl", VALID)), "--model", "register")
    assert result.exit_code == 0, result.output
    verdict = last_json(result)
    assert verdict.keys() == {"valid", "keys", "ops", "seconds", "failed_key"}
    assert (verdict["valid"], verdict["keys"], verdict["ops"], verdict["failed_key"]) == (
        True,
        1,
        2,
        None,
    )


def test_invalid_history_exits_1_and_explains(tmp_path: Path) -> None:
    result = run("check", str(write(tmp_path / "h.jsonl", INVALID)), "--model", "register")
    assert result.exit_code == 1
    assert last_json(result)["valid"] is False
    assert last_json(result)["failed_key"] == "x"
    assert "process 1 read -> 7" in result.stdout


def test_time_limit_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path / "h.jsonl", VALID)
    result = run("check", str(path), "--model", "register", "--timeout", "1e-12")
    assert result.exit_code == 2
    assert last_json(result)["valid"] == "unknown"


def test_stdin(tmp_path: Path) -> None:
    text = write(tmp_path / "h.jsonl", VALID).read_text()
    result = run("check", "-", "--model", "register", input=text)
    assert result.exit_code == 0 and last_json(result)["valid"] is True


def test_malformed_history_exits_3_with_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "h.jsonl", [(0, "invoke", "write", 1), (0, "ok", "read", 1)])
    result = run("check", str(path), "--model", "register")
    assert result.exit_code == 3
    assert f"{path}:2: completion f 'read' differs" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["check", "missing.jsonl", "--model", "register"],  # unreadable
        ["check", "h.jsonl", "--model", "queue"],  # bad choice
        ["check", "h.jsonl"],  # missing option
        ["check", "h.jsonl", "--model", "kv", "--timeout", "0"],  # out of range
        ["frobnicate"],  # unknown command
    ],
)
def test_bad_usage_exits_3(
    tmp_path: Path, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "h.jsonl", VALID)
    result = run(*args)
    assert result.exit_code == 3, result.output
    assert result.stderr


def test_not_utf8_exits_3(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_bytes(b"\xff\xfe\x00")
    result = run("check", str(path), "--model", "register")
    assert result.exit_code == 3 and "not UTF-8" in result.stderr


def test_html_report_is_written(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    path = write(tmp_path / "h.jsonl", INVALID)
    result = run("check", str(path), "--model", "register", "--html", str(report))
    assert result.exit_code == 1
    text = report.read_text(encoding="utf-8")
    assert "not linearizable" in text and "read -&gt; 7" in text
    assert last_json(result)["valid"] is False  # the verdict stays the last line


def test_help_lists_check() -> None:
    result = run("--help")
    assert result.exit_code == 0 and "check" in result.stdout
