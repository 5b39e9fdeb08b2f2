"""The run's part of the HTML report: a summary table and latency over time, faults shaded.

What lives here: `latency_svg` (one dot per operation at its invoke time, y = latency on a log
scale, coloured by outcome; each nemesis period a shaded band with its label; reshards, which
overlap the other faults, translucent on top of them, labelled at the bottom), `run_section`
(the summary table, the plot and the nemesis log as HTML), `embed` (puts that section into the
checker's report, right after its heading) and `standalone_page` (a whole page, for runs the
linearizability checker does not judge, like ``counter``).

The checker's report draws per-key timelines in event order and has no wall-clock axis; this
plot is the wall-clock view that shows what each fault did to latency and availability.
Operations that end ``info`` are drawn at the time they gave up. Dots that would land on the
same pixel in the same colour are drawn once, so a long run stays a small page.

What must not: I/O, clocks, checking anything. Everything is inline (no script, nothing
fetched), like the checker's report.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from jepsen_lite.nemesis import Period

__all__ = ["Span", "embed", "latency_svg", "run_section", "standalone_page"]

_W, _H = 1000, 320
_L, _R, _T, _B = 64, 16, 26, 40
_COLOURS = {"ok": "#2d7a3a", "fail": "#8c8c8c", "info": "#d97a00"}
_BANDS = {"partition": "#f6d5d5", "kill": "#d5e0f6", "pause": "#e8d9f3", "reshard": "#f3e6a8"}


@dataclass(frozen=True, slots=True)
class Span:
    """One operation for the plot: monotonic ns, its outcome type and `f`."""

    invoke: int
    complete: int
    type: str
    f: str


def _e(text: object) -> str:
    return html.escape(str(text))


def latency_svg(spans: Sequence[Span], periods: Sequence[Period], start: int, end: int) -> str:
    """The plot as an inline ``<svg>``; times are monotonic ns, `start`..`end` the x range."""
    end = max(end, start + 1)
    pw, ph = _W - _L - _R, _H - _T - _B
    seconds = (end - start) / 1e9
    lat_max = max((s.complete - s.invoke for s in spans), default=1_000_000)
    top_exp = max(1, math.ceil(math.log10(max(lat_max, 1) / 1e6)))  # decades of ms
    low_exp = -1  # 0.1 ms

    def x(t: int) -> float:
        return _L + pw * min(max((t - start) / (end - start), 0.0), 1.0)

    def y(ns: int) -> float:
        ms = max(ns / 1e6, 10.0**low_exp)
        return _T + ph * (1 - (math.log10(ms) - low_exp) / (top_exp - low_exp))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img" '
        'aria-label="latency over time" style="font: 11px system-ui, sans-serif">',
        f'<rect x="{_L}" y="{_T}" width="{pw}" height="{ph}" fill="#fff" stroke="#bbb"/>',
    ]
    # Reshards overlap the other faults: drawn after them, translucent, labelled at the bottom.
    for p in sorted(periods, key=lambda p: p.kind == "reshard"):
        x1, x2 = x(p.start), x(p.end if p.end is not None else end)
        colour = _BANDS.get(p.kind, "#eee")
        over = p.kind == "reshard"
        ly = _T + ph - 4 if over else _T - 4
        out.append(
            f'<g><title>{_e(p.label)}</title><rect x="{x1:.1f}" y="{_T}" '
            f'width="{max(x2 - x1, 1):.1f}" height="{ph}" fill="{colour}" '
            f'opacity="{0.55 if over else 0.8}"/>'
            f'<text x="{x1 + 2:.1f}" y="{ly}" fill="#555">{_e(p.label[:28])}</text></g>'
        )
    for exp in range(low_exp, top_exp + 1):
        yy = y(int(10.0**exp * 1e6))
        label = f"{10.0**exp:g} ms" if exp < 3 else f"{10.0 ** (exp - 3):g} s"
        out.append(
            f'<line x1="{_L}" x2="{_L + pw}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#e3e3e3"/>'
            f'<text x="{_L - 4}" y="{yy + 4:.1f}" text-anchor="end">{label}</text>'
        )
    step = _tick_step(seconds)
    t = 0.0
    while t <= seconds + 1e-9:
        xx = _L + pw * t / seconds if seconds else _L
        out.append(
            f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{_T + ph}" y2="{_T + ph + 4}" stroke="#555"/>'
            f'<text x="{xx:.1f}" y="{_T + ph + 16}" text-anchor="middle">{t:g}</text>'
        )
        t += step
    out.append(
        f'<text x="{_L + pw / 2}" y="{_H - 6}" text-anchor="middle">seconds since the run '
        f"started (dot at the invoke; y: latency, log scale)</text>"
    )
    drawn: set[tuple[int, int, str]] = set()
    for kind in ("ok", "fail", "info"):  # info last: on top, the rarest and most telling
        colour = _COLOURS[kind]
        dots = []
        for s in spans:
            if s.type != kind:
                continue
            px, py = round(x(s.invoke)), round(y(s.complete - s.invoke))
            if (px, py, kind) in drawn:
                continue
            drawn.add((px, py, kind))
            dots.append(f'<circle cx="{px}" cy="{py}" r="1.8"/>')
        out.append(f'<g fill="{colour}" fill-opacity="0.75">{"".join(dots)}</g>')
    lx = _L + 8
    for kind, colour in _COLOURS.items():
        out.append(
            f'<circle cx="{lx}" cy="{_T + 10}" r="4" fill="{colour}"/>'
            f'<text x="{lx + 7}" y="{_T + 14}">{kind}</text>'
        )
        lx += 48
    for kind, colour in _BANDS.items():
        out.append(
            f'<rect x="{lx}" y="{_T + 5}" width="12" height="10" fill="{colour}"/>'
            f'<text x="{lx + 15}" y="{_T + 14}">{kind}</text>'
        )
        lx += 72
    out.append("</svg>")
    return "\n".join(out)


def _tick_step(seconds: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if seconds / step <= 12:
            return float(step)
    return 1200.0


def run_section(
    title: str,
    rows: Iterable[tuple[str, str]],
    svg: str,
    nemesis_lines: Iterable[str] = (),
    notes: Iterable[str] = (),
) -> str:
    """The run's HTML: a heading, a two-column table, the plot, notes and the nemesis log."""
    out = [f'<section id="run"><h2 style="display:block">{_e(title)}</h2><table>']
    out.extend(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    out.append("</table>")
    out.append(f'<div class="scroll">{svg}</div>')
    for note in notes:
        out.append(f"<pre>{_e(note)}</pre>")
    lines = list(nemesis_lines)
    if lines:
        out.append("<details><summary>nemesis log</summary><pre>")
        out.append(_e("\n".join(lines)))
        out.append("</pre></details>")
    out.append("</section>")
    return "\n".join(out)


def embed(report: str, section: str) -> str:
    """`report` (the checker's page) with `section` after its first ``</h1>`` (before
    ``</body>`` if it has none)."""
    for marker in ("</h1>", "</body>"):
        at = report.find(marker)
        if at >= 0:
            at += len(marker) if marker == "</h1>" else 0
            return report[:at] + "\n" + section + "\n" + report[at:]
    return report + section


def standalone_page(title: str, verdict_html: str, section: str) -> str:
    """A whole page with the run's section, for runs without a checker report."""
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>jepsen-lite: {_e(title)}</title>",
            "<style>body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }"
            " td, th { padding: 2px 10px; text-align: left; }"
            " .valid { color: #17692b; } .invalid { color: #b3161b; }"
            " .unknown { color: #8a5a00; } .scroll { overflow-x: auto; }</style>",
            "</head><body>",
            f"<h1>{verdict_html}</h1>",
            section,
            "</body></html>",
        ]
    )
