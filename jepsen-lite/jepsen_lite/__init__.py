"""jepsen-lite: fault-injection runs against kvcluster and a linearizability checker.

What lives here: the public API, re-exported from the modules below (`__all__` is the whole
supported surface). `history` parses and validates, `models` holds the sequential
specifications, `checker` searches, `report` renders HTML, `synth` makes synthetic histories,
`cli` is the command line.

What must not: logic of its own.
"""

from jepsen_lite.checker import KeyResult, Outcome, Step, Verdict, check_history, check_key
from jepsen_lite.history import History, HistoryError, Operation, build_history, parse_jsonl
from jepsen_lite.models import MODELS, KVModel, Model, RegisterModel, get_model
from jepsen_lite.report import render_html

__all__ = [
    "MODELS",
    "History",
    "HistoryError",
    "KVModel",
    "KeyResult",
    "Model",
    "Operation",
    "Outcome",
    "RegisterModel",
    "Step",
    "Verdict",
    "build_history",
    "check_history",
    "check_key",
    "get_model",
    "parse_jsonl",
    "render_html",
]
