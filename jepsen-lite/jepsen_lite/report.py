"""The HTML report: one self-contained file (inline CSS and SVG, no script, no network).

What lives here: `render_html`, which draws, per key, a timeline of operations by process
(one lane per process, x = order of events in the history), with each operation's details and
the model state before and after it in a hover tooltip. For an invalid key it highlights the
longest linearizable prefix found (numbered in linearization order), the operation that could
not be placed (red) and the other operations that could have come next (orange), and lists the
prefix step by step.

What must not: checking anything (it only draws a `Verdict`), or writing files (the CLI does).
"""

from __future__ import annotations

import html
from collections.abc import Iterable

from jepsen_lite.checker import KeyResult, Outcome, Step, Verdict
from jepsen_lite.history import Operation
from jepsen_lite.models import Model, get_model

__all__ = ["render_html"]

_UNIT_MIN, _UNIT_MAX = 16, 56  # pixels per event: wide for short histories, never narrower
_WIDTH = 1100  # a timeline narrower than this uses wider events
_LANE = 26  # pixels per process lane
_LEFT = 70  # room for the lane labels
_CHAR = 6.6  # approximate width of a character of the bar labels

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin: 0; display: inline; }
.valid { color: #17692b; } .invalid { color: #b3161b; } .unknown { color: #8a5a00; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; }
tr:nth-child(even) { background: #f4f4f4; }
details { margin: 1em 0; border-top: 1px solid #ccc; padding-top: .6em; }
.scroll { overflow-x: auto; border: 1px solid #ddd; margin: .5em 0; }
svg text { font: 11px ui-monospace, monospace; pointer-events: none; }
.lane { fill: #555; } .bar rect { stroke: #666; stroke-width: 1; }
.bar:hover rect { stroke: #000; stroke-width: 2.5; }
.ok rect { fill: #cfe3f7; } .info rect { fill: #fde8b5; stroke-dasharray: 4 2; }
.fail rect { fill: #eee; stroke: #bbb; } .pruned rect { fill: #f6f6f6; stroke: #ccc; }
.placed rect { fill: #bfe6c4; stroke: #2d7a3a; }
.candidate rect { fill: #ffd3a1; stroke: #c46a00; stroke-width: 2; }
.stuck rect { fill: #ff9d9d; stroke: #b3161b; stroke-width: 3; }
.tail { stroke: #c9a24a; stroke-dasharray: 3 3; }
.legend span { display: inline-block; padding: 0 .5em; margin-right: .4em; border: 1px solid #999; }
ol.steps { font-family: ui-monospace, monospace; font-size: 12px; }
ol.steps li.stuck { color: #b3161b; font-weight: bold; list-style: none; }
"""


def render_html(verdict: Verdict, *, max_timelines: int = 200) -> str:
    """The report for `verdict`. Timelines are drawn for every invalid and unknown key and for
    valid keys up to `max_timelines` keys in all (a large history would make a huge page)."""
    model = get_model(verdict.model)
    summary = verdict.summary()
    title = {
        Outcome.VALID: "linearizable",
        Outcome.INVALID: "not linearizable",
        Outcome.UNKNOWN: "unknown (time limit reached)",
    }[verdict.outcome]
    ordered = sorted(
        verdict.keys.values(), key=lambda r: (r.outcome is Outcome.VALID, r.outcome, r.key)
    )
    drawn = {r.key for r in ordered if r.outcome is not Outcome.VALID}
    drawn |= {r.key for r in ordered[: max(max_timelines, len(drawn))]}
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>jepsen-lite: {_e(title)}</title><style>{_CSS}</style></head><body>",
        f'<h1>History is <span class="{verdict.outcome}">{_e(title)}</span></h1>',
        f"<p>Model <b>{_e(verdict.model)}</b>: {summary['ops']} operations on "
        f"{summary['keys']} keys, checked in {summary['seconds']} s.</p>",
        '<p class="legend">'
        '<span style="background:#cfe3f7">ok</span>'
        '<span style="background:#fde8b5">info (open to the end)</span>'
        '<span style="background:#eee">fail</span>'
        '<span style="background:#f6f6f6">pruned</span>'
        '<span style="background:#bfe6c4">in the longest linearizable prefix</span>'
        '<span style="background:#ff9d9d">could not be placed</span>'
        '<span style="background:#ffd3a1">could not come next either</span>'
        " Hover over an operation for its details and the model state around it.</p>",
        _key_table(ordered, drawn),
    ]
    for result in ordered:
        if result.key in drawn:
            out.append(_key_section(model, result))
    if len(drawn) < len(ordered):
        out.append(f"<p>{len(ordered) - len(drawn)} more valid keys are not drawn.</p>")
    out.append("</body></html>")
    return "\n".join(out)


def _e(text: object) -> str:
    return html.escape(str(text))


def _anchor(key: str) -> str:
    return "key-" + "".join(c if c.isalnum() else f"_{ord(c):x}" for c in key)


def _key_table(results: Iterable[KeyResult], drawn: set[str]) -> str:
    rows = [
        "<table><tr><th>key</th><th>verdict</th><th>ops</th><th>searched</th>"
        "<th>states</th><th>seconds</th></tr>"
    ]
    for r in results:
        name = f'<a href="#{_anchor(r.key)}">{_e(r.key)}</a>' if r.key in drawn else _e(r.key)
        rows.append(
            f'<tr><td>{name}</td><td class="{r.outcome}">{r.outcome}</td><td>{len(r.ops)}</td>'
            f"<td>{len(r.ops) - len(r.pruned)}</td><td>{r.states}</td>"
            f"<td>{r.seconds:.3f}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _key_section(model: Model, r: KeyResult) -> str:
    is_open = " open" if r.outcome is not Outcome.VALID else ""
    out = [
        f'<details id="{_anchor(r.key)}"{is_open}><summary><h2>key {_e(r.key)}: '
        f'<span class="{r.outcome}">{r.outcome}</span></h2></summary>'
    ]
    placed = len(r.linearization)
    final = r.linearization[-1].after if placed else model.init()
    if r.outcome is Outcome.INVALID:
        out.append(
            f"<p>The longest linearizable prefix found places {placed} of "
            f"{len(r.ops) - len(r.pruned)} searched operations and leaves the state "
            f"<code>{_e(model.describe_state(final))}</code>. No operation could come next:</p><ul>"
        )
        for op, why in r.candidates:
            cls = ' class="invalid"' if op is r.stuck else ""
            out.append(f"<li{cls}><code>{_e(_describe(model, op))}</code>: {_e(why)}</li>")
        out.append("</ul>")
    elif r.outcome is Outcome.UNKNOWN:
        out.append(f"<p>Ran out of time; the longest prefix placed has {placed} operations.</p>")
    else:
        out.append(
            f"<p>Linearizable; the bars are numbered in the order found ({placed} placed).</p>"
        )
    out.append(_timeline(model, r))
    if r.outcome is Outcome.INVALID:
        out.append('<ol class="steps">')
        for s in r.linearization:
            out.append(
                f"<li>{_e(_describe(model, s.op))}: {_e(model.describe_state(s.before))} "
                f"&rarr; {_e(model.describe_state(s.after))}</li>"
            )
        if r.stuck is not None:
            out.append(
                f'<li class="stuck">&#x2716; {_e(_describe(model, r.stuck))} cannot be placed '
                f"in state {_e(model.describe_state(final))}</li>"
            )
        out.append("</ol>")
    out.append("</details>")
    return "\n".join(out)


def _describe(model: Model, op: Operation) -> str:
    return f"process {op.process} {model.describe_op(op)} ({op.status}, line {op.invoke_line})"


def _timeline(model: Model, r: KeyResult) -> str:
    positions = sorted(
        {op.invoke_index for op in r.ops}
        | {op.complete_index for op in r.ops if op.complete_index is not None}
    )
    rank = {p: i for i, p in enumerate(positions)}
    end = len(positions)  # where info ops' open tails end
    unit = max(_UNIT_MIN, min(_UNIT_MAX, _WIDTH // (end + 2)))
    lanes = {p: i for i, p in enumerate(sorted({op.process for op in r.ops}))}
    width = _LEFT + (end + 2) * unit
    height = (len(lanes) + 1) * _LANE
    order = {s.op.id: (n, s) for n, s in enumerate(r.linearization, 1)}
    candidates = {op.id for op, _ in r.candidates}
    out = [
        f'<div class="scroll"><svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" role="img" aria-label="timeline of key {_e(r.key)}">'
    ]
    for process, lane in lanes.items():
        out.append(f'<text class="lane" x="4" y="{(lane + 1) * _LANE - 8}">P{process}</text>')
    for op in r.ops:
        x1 = _LEFT + rank[op.invoke_index] * unit
        last = rank[op.complete_index] if op.complete_index is not None else end
        x2 = _LEFT + last * unit + unit // 2
        y = lane_y = lanes[op.process] * _LANE + 6
        cls = _op_class(r, op, order, candidates)
        label = model.describe_op(op)
        number = order.get(op.id)
        if number is not None:
            label = f"{number[0]}: {label}"
        tip = _tooltip(model, r, op, number)
        out.append(f'<g class="bar {cls}"><title>{_e(tip)}</title>')
        out.append(
            f'<rect x="{x1}" y="{y}" width="{max(x2 - x1, 4)}" height="{_LANE - 10}" rx="3"/>'
        )
        if op.status == "info":
            tail_y = lane_y + (_LANE - 10) // 2
            out.append(
                f'<line class="tail" x1="{x2}" y1="{tail_y}" x2="{_LEFT + (end + 1) * unit}" '
                f'y2="{tail_y}"/>'
            )
        fits = int((x2 - x1 - 6) / _CHAR)
        if len(label) > fits:
            label = label[: fits - 1] + "\u2026" if fits >= 6 else str(number[0]) if number else ""
        if label and len(label) <= max(fits, 1):
            out.append(f'<text x="{x1 + 3}" y="{y + _LANE - 15}">{_e(label)}</text>')
        out.append("</g>")
    out.append("</svg></div>")
    return "\n".join(out)


def _op_class(
    r: KeyResult, op: Operation, order: dict[int, tuple[int, Step]], candidates: set[int]
) -> str:
    if r.stuck is not None and op.id == r.stuck.id:
        return "stuck"
    if op.id in candidates:
        return "candidate"
    if r.outcome is Outcome.INVALID and op.id in order:
        return "placed"
    if op.id in r.pruned:
        return "fail" if op.status == "fail" else "pruned"
    return op.status


def _tooltip(model: Model, r: KeyResult, op: Operation, number: tuple[int, Step] | None) -> str:
    where = f"line {op.invoke_line}"
    where += f"-{op.complete_line}" if op.complete_line is not None else " (never completed)"
    lines = [f"process {op.process}: {model.describe_op(op)}", f"{op.status}, {where}"]
    lines.append(
        f"time {op.invoke_time}" + (f"-{op.complete_time}" if op.complete_time is not None else "")
    )
    if number is not None:
        n, step = number
        lines.append(
            f"linearized #{n}: state {model.describe_state(step.before)} -> "
            f"{model.describe_state(step.after)}"
        )
    elif op.id in r.pruned:
        lines.append(f"not searched: {r.pruned[op.id]}")
    elif op.status == "info":
        lines.append("not placed (an info op may not have happened)")
    else:
        why = next((w for c, w in r.candidates if c.id == op.id), None)
        lines.append(f"not placed: {why}" if why else "not placed")
    return "\n".join(lines)
