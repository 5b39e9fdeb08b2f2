#!/usr/bin/env python3
"""Generate the Python code for proto/kvcluster/v1/*.proto into kvcluster/v1/.

    python scripts/gen_proto.py            # regenerate in place
    python scripts/gen_proto.py --check    # exit 1 if the checked-in code is stale

The generated modules are committed so that a fresh clone needs no code generator; the
test suite runs ``--check`` so stale generated code cannot land.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
PACKAGE = "kvcluster/v1"


def generate(out: Path) -> list[Path]:
    from grpc_tools import protoc  # dev dependency: grpcio-tools

    protos = sorted((PROTO_ROOT / PACKAGE).glob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{Path(protoc.__file__).parent / '_proto'}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *(str(p) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted((out / PACKAGE).glob("*_pb2*.py*"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = generate(Path(tmp))
        stale = []
        for f in files:
            dest = ROOT / PACKAGE / f.name
            if args.check:
                if not dest.exists() or not filecmp.cmp(f, dest, shallow=False):
                    stale.append(dest.relative_to(ROOT))
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dest)
        known = {f.name for f in files}
        extra = [p for p in (ROOT / PACKAGE).glob("*_pb2*.py*") if p.name not in known]
        if args.check:
            if stale or extra:
                print("stale generated code:", *map(str, stale + extra), file=sys.stderr)
                print("run: python scripts/gen_proto.py", file=sys.stderr)
                return 1
            print("generated code is up to date")
        else:
            for p in extra:
                p.unlink()
            print(f"generated {len(files)} files into {PACKAGE}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
