"""The HTML report: self-contained, one timeline per key, the failing op highlighted."""

from __future__ import annotations

import random
import re

from jepsen_lite import check_history, render_html
from jepsen_lite.synth import simulate


def stale_read_history() -> list[dict[str, object]]:
    rows: list[tuple[int, str, str, object, str]] = [
        (0, "invoke", "write", 1, "x"),
        (0, "ok", "write", 1, "x"),
        (1, "invoke", "write", 2, "x"),
        (1, "ok", "write", 2, "x"),
        (2, "invoke", "read", None, "x"),
        (2, "ok", "read", 1, "x"),  # stale
        (3, "invoke", "write", 3, "x"),
        (3, "info", "write", 3, "x"),
        (4, "invoke", "read", None, "x"),
        (4, "ok", "read", 2, "x"),
        (5, "invoke", "read", None, "y <&>"),
        (5, "ok", "read", None, "y <&>"),
    ]
    return [
        {"process": p, "type": t, "f": f, "key": k, "value": v, "time": i}
        for i, (p, t, f, v, k) in enumerate(rows)
    ]


def test_invalid_key_highlights_the_op_that_could_not_be_placed() -> None:
    text = render_html(check_history(stale_read_history(), "register"))
    assert text.startswith("<!doctype html>")
    stuck = re.findall(r'<g class="bar stuck"><title>([^<]*)</title>', text)
    assert len(stuck) == 1
    assert (
        "process 2: read -&gt; 1" in stuck[0] and "not placed: not possible in state 2" in stuck[0]
    )
    placed = re.findall(r'<g class="bar placed"><title>([^<]*)</title>', text)
    assert len(placed) == 2
    assert any("linearized #2: state 1 -&gt; 2" in tip for tip in placed)
    assert "cannot be placed in state 2" in text  # the step-by-step prefix


def test_every_key_gets_a_timeline_and_names_are_escaped() -> None:
    text = render_html(check_history(stale_read_history(), "register"))
    assert text.count("<svg") == 2
    assert "y &lt;&amp;&gt;" in text and "y <&>" not in text
    assert "info (open to the end)" in text


def test_report_is_self_contained() -> None:
    history = simulate(random.Random(3), "kv", ops=60, processes=6, keys=4, info=0.2)
    text = render_html(check_history(history, "kv"))
    assert "<script" not in text and "<link" not in text
    assert re.findall(r"https?://[^\"]*", text) == ["http://www.w3.org/2000/svg"] * 4


def test_large_histories_draw_a_bounded_number_of_valid_keys() -> None:
    history = simulate(random.Random(4), "register", ops=60, processes=6, keys=10)
    text = render_html(check_history(history, "register"), max_timelines=3)
    assert text.count("<svg") == 3
    assert "7 more valid keys are not drawn" in text
