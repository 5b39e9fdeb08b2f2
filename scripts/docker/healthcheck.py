"""Docker HEALTHCHECK for a kvcluster node: exit 0 when ``GET /health`` answers 200.

The node serves /health on ``KV_HTTP`` (the same variable the server reads); this dials its
port on 127.0.0.1 (or the host in ``KV_HTTP`` when it is a specific one). 503 — some group
has no leader — and no answer are both unhealthy. Standard library only.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    address = os.environ.get("KV_HTTP", "")
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        print(f"healthcheck: KV_HTTP must be HOST:PORT, got {address!r}", file=sys.stderr)
        return 1
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    url = f"http://{host}:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            print(resp.read(500).decode(errors="replace"))
            return 0
    except urllib.error.HTTPError as e:  # 503: a group without a leader
        print(f"healthcheck: {url}: {e.code} {e.read(500).decode(errors='replace')}")
    except OSError as e:
        print(f"healthcheck: {url}: {e}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
