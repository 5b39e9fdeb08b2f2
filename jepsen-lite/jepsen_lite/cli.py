"""The command line: the ``jepsen-lite`` click group and its ``check`` command.

What lives here: `main` (the console script), the exit codes every command shares, and
`check`: read a history file, call `check_history`, print a human explanation and then the
JSON verdict as the *last line* of stdout, optionally write the HTML report.

What must not: checking logic (`checker`), parsing rules (`history`), HTML (`report`). A new
command (``run`` is next) lives in its own module as a click command and is attached here
with ``main.add_command(...)``; it should exit through the same codes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from jepsen_lite.checker import Outcome, check_history
from jepsen_lite.history import HistoryError, parse_jsonl
from jepsen_lite.models import MODELS, get_model
from jepsen_lite.report import render_html

__all__ = ["EXIT_CODES", "EXIT_INVALID", "EXIT_MALFORMED", "EXIT_UNKNOWN", "EXIT_VALID", "main"]

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_UNKNOWN = 2  # only when the time limit ran out
EXIT_MALFORMED = 3  # malformed history, unreadable input, unwritable report, bad usage
EXIT_CODES = {
    Outcome.VALID: EXIT_VALID,
    Outcome.INVALID: EXIT_INVALID,
    Outcome.UNKNOWN: EXIT_UNKNOWN,
}


class _Group(click.Group):
    """A click group whose usage errors exit with `EXIT_MALFORMED` rather than click's 2,
    which callers would read as an "unknown" verdict."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as e:
            e.show()
            raise click.exceptions.Exit(EXIT_MALFORMED) from e

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            e.show()
            raise click.exceptions.Exit(EXIT_MALFORMED) from e


@click.group(cls=_Group)
@click.version_option(package_name="jepsen-lite")
def main() -> None:
    """jepsen-lite: fault-injection runs and a linearizability checker for kvcluster.

    Exit codes: 0 valid, 1 invalid, 2 unknown (time limit reached), 3 bad input or usage.
    """


@main.command()
@click.argument("history", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--model", type=click.Choice(sorted(MODELS)), required=True, help="The sequential model."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Give up after this long and answer unknown (default: no limit).",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    metavar="REPORT.html",
    help="Also write a self-contained HTML report here.",
)
@click.pass_context
def check(
    ctx: click.Context, history: str, model: str, timeout: float | None, html_path: str | None
) -> None:
    """Check that HISTORY (JSON lines, '-' for stdin) is linearizable.

    The last line of stdout is the verdict as JSON: {"valid": true|false|"unknown", "keys",
    "ops", "seconds", "failed_key"}.
    """
    try:
        if history == "-":
            parsed = parse_jsonl(sys.stdin, get_model(model))
        else:
            with open(history, encoding="utf-8") as f:
                parsed = parse_jsonl(f, get_model(model))
    except HistoryError as e:
        _fail(ctx, f"{history}:{e.line}: {e.reason}")
    except UnicodeDecodeError as e:
        _fail(ctx, f"{history}: not UTF-8 text ({e.reason})")
    except OSError as e:
        _fail(ctx, f"{history}: {e.strerror or e}")

    verdict = check_history(parsed, model, timeout)
    explanation = verdict.explain()
    if explanation:
        click.echo(explanation)
    if html_path is not None:
        try:
            Path(html_path).write_text(render_html(verdict), encoding="utf-8")
        except OSError as e:
            _fail(ctx, f"{html_path}: {e.strerror or e}")
        click.echo(f"report written to {html_path}")
    click.echo(json.dumps(verdict.summary()))
    ctx.exit(EXIT_CODES[verdict.outcome])


def _fail(ctx: click.Context, message: str) -> NoReturn:
    click.echo(f"jepsen-lite: {message}", err=True)
    ctx.exit(EXIT_MALFORMED)


# `jepsen-lite run`: fault-injection runs against kvcluster (jepsen_lite/run_cli.py). It
# imports kvcluster only when a run starts, so `check` works without it.
from jepsen_lite.run_cli import register as _register_run  # noqa: E402

_register_run(main)
