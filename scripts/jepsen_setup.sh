#!/usr/bin/env bash
# Prepare this machine for `jepsen-lite run --backend local`: install iproute2 (ip, network
# namespaces, veth, bridge) and iptables with apt-get when they are missing, then check that
# a network namespace can be created and that iptables works inside one.
#
# Needs root (the runs need it too). Touches nothing else: no sysctl, no firewall rule stays.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
    echo "jepsen_setup: run as root (sudo bash scripts/jepsen_setup.sh)" >&2
    exit 1
fi

missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)  # optional: nodes die with the runner

if ((${#missing[@]})); then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "jepsen_setup: missing ${missing[*]} and no apt-get here; install them by hand" >&2
        exit 1
    fi
    echo "jepsen_setup: installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

probe="jepsen-lite-setup-$$"
cleanup() { ip netns del "$probe" >/dev/null 2>&1 || true; }
trap cleanup EXIT
if ! ip netns add "$probe"; then
    echo "jepsen_setup: cannot create a network namespace here (a container without" \
        "CAP_SYS_ADMIN? run it privileged, or on a VM)" >&2
    exit 1
fi
if ! ip netns exec "$probe" iptables -w -S INPUT >/dev/null; then
    echo "jepsen_setup: iptables does not work inside a network namespace here" \
        "(kernel without nf_tables / ip_tables?)" >&2
    exit 1
fi
echo "jepsen_setup: ok ($(ip -V), $(iptables --version))"
