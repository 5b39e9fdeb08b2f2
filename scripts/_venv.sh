# Sourced by the other scripts: make (or reuse) the project's virtualenv in .venv and
# install the project with the given extra into it. Needs only python3 (>= 3.11) and PyPI.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${KV_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
kv_install() {  # kv_install EXTRA
  local extra="$1" stamp="$VENV/.installed-$1"
  # Reinstall only when the dependency lists changed (fast repeated runs).
  local sum
  sum="$(cat "$ROOT/pyproject.toml" "$ROOT/jepsen-lite/pyproject.toml" 2>/dev/null | sha1sum | cut -c1-40)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
    echo "installing kvcluster[$extra] into $VENV (log: $VENV/pip.log)" >&2
    local targets=(-e "$ROOT[$extra]")
    [ -f "$ROOT/jepsen-lite/pyproject.toml" ] && targets+=(-e "$ROOT/jepsen-lite")
    if ! { "$VENV/bin/python" -m pip install -q --upgrade pip &&
           "$VENV/bin/python" -m pip install -q "${targets[@]}"; } >"$VENV/pip.log" 2>&1; then
      cat "$VENV/pip.log" >&2
      echo "pip install failed" >&2
      exit 1
    fi
    echo "$sum" > "$stamp"
  fi
}
