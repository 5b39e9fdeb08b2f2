"""The run's report section: a well-formed latency plot with the faults shaded, embedded in
the checker's report."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from jepsen_lite import check_history, render_html
from jepsen_lite.nemesis import Period
from jepsen_lite.runner import reshard_stats
from jepsen_lite.runreport import Span, embed, latency_svg, run_section, standalone_page

NS = "{http://www.w3.org/2000/svg}"
S = 1_000_000_000


def spans() -> list[Span]:
    out = [Span(i * S // 10, i * S // 10 + 2_000_000, "ok", "read") for i in range(100)]
    out.append(Span(3 * S, 4 * S, "info", "write"))
    out.append(Span(5 * S, 5 * S + 300_000_000, "fail", "cas"))
    out += [Span(i * S // 10, i * S // 10 + 2_000_000, "ok", "read") for i in range(100)]  # dupes
    return out


def test_latency_svg_is_well_formed_with_a_band_per_fault() -> None:
    faults = [
        Period(2 * S, 4 * S, "partition", "partition halves"),
        Period(6 * S, None, "kill", "kill n2"),
    ]
    svg = latency_svg(spans(), faults, 0, 10 * S)
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg"
    titles = [t.text for t in root.iter(f"{NS}title")]
    assert titles == ["partition halves", "kill n2"]
    dots = list(root.iter(f"{NS}circle"))
    assert 100 < len(dots) < 200  # one per pixel and colour: the duplicates are drawn once
    fills = {g.get("fill") for g in root.iter(f"{NS}g") if g.get("fill")}
    assert {"#2d7a3a", "#8c8c8c", "#d97a00"} <= fills
    assert "1 s" in svg and "seconds since the run started" in svg


def test_latency_svg_of_an_empty_run() -> None:
    ET.fromstring(latency_svg([], [], 5, 5))


def test_run_section_goes_after_the_checker_heading() -> None:
    events = [
        {"process": 0, "type": "invoke", "f": "write", "key": "x", "value": 1, "time": 0},
        {"process": 0, "type": "ok", "f": "write", "key": "x", "value": 1, "time": 1},
    ]
    report = render_html(check_history(events, "register"))
    section = run_section("The run", [("nemesis", "kill <&>")], "<svg></svg>", ["t=1 kill"])
    page = embed(report, section)
    assert page.index("</h1>") < page.index('<section id="run">') < page.index("<table>")
    assert "kill &lt;&amp;&gt;" in page and "nemesis log" in page
    assert (
        embed("<html><body></body></html>", "<p>x</p>") == "<html><body>\n<p>x</p>\n</body></html>"
    )
    whole = standalone_page("counter: valid", "Counter is valid", section)
    assert whole.startswith("<!doctype html>") and section in whole


def test_reshards_are_drawn_over_the_faults_they_overlap() -> None:
    faults = [
        Period(1 * S, 5 * S, "reshard", "reshard g1->g2 (30 slots)"),
        Period(2 * S, 4 * S, "kill", "kill n1"),
    ]
    root = ET.fromstring(latency_svg(spans(), faults, 0, 10 * S))
    titles = [t.text for t in root.iter(f"{NS}title")]
    assert titles == ["kill n1", "reshard g1->g2 (30 slots)"]  # the reshard on top
    legend = [t.text for t in root.iter(f"{NS}text")]
    assert "reshard" in legend


def test_reshard_stats_from_the_nemesis_log() -> None:
    log: list[dict[str, object]] = [
        {"type": "start", "id": 1, "fault": "reshard", "from": 1, "to": 2, "moves": 10},
        {"type": "start", "id": 2, "fault": "kill", "target": 1},
        {"type": "stop", "id": 1, "fault": "reshard", "outcome": {"done": 10}, "moved": 10,
         "hot_keys_moved": ["k1", "k2"]},
        {"type": "start", "id": 3, "fault": "reshard", "from": 2, "to": 1, "moves": 5},
        {"type": "heal-all"},
        {"type": "stop", "id": 3, "fault": "reshard", "outcome": {"done": 2, "stopped": 3},
         "moved": 2, "hot_keys_moved": [], "error": None},
        {"type": "start", "id": "finish", "fault": "reshard", "moves": 3},
        {"type": "stop", "id": "finish", "fault": "reshard", "outcome": {"done": 3}, "left": 0},
    ]  # fmt: skip
    assert reshard_stats(log) == {
        "reshards": 2,
        "slots_planned": 15,
        "slots_moved": 12,
        "hot_keys_moved": 2,
        "outcomes": {"done": 15, "stopped": 3},
        "left_at_heal": 3,
        "errors": [],
        "crashed": [],
    }
