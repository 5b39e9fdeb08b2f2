#!/usr/bin/env python3
"""The peer transport's costs: the codec per message, and GrpcTransport on loopback.

1. codec: microseconds to encode and to decode one APP message carrying 64 entries of 64 B,
   and one HEARTBEAT (best of several runs; process CPU, one core).
2. loopback: two GrpcTransports in one process and one event loop; node 1 sends HEARTBEATs
   to node 2, ``--per-turn`` messages per loop turn (so per batch), keeping at most
   ``--window`` batches unacknowledged by the receiver. Reported: messages per wall-second and
   CPU microseconds per message (sender and receiver together: they share the process).
   ``--per-turn 1`` shows what batching saves.

JSON on the last line. Usage:
    python scripts/bench_transport.py [--messages N] [--per-turn 1,64] [--window 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import timeit
from collections.abc import Callable
from functools import partial

import grpc
import grpc.aio

from kvcluster.raft.types import Entry, Message, MessageType
from kvcluster.transport import SERVER_OPTIONS, GrpcTransport, decode_message, encode_message
from kvcluster.v1 import raft_pb2_grpc


def best_us(fn: Callable[[], object], number: int = 2000, repeat: int = 7) -> float:
    """Microseconds per call, best of ``repeat`` runs (the least disturbed by other load)."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def bench_codec() -> dict[str, float]:
    app = Message(
        MessageType.APP,
        to=2,
        from_=1,
        term=7,
        log_term=7,
        index=100_000,
        commit=99_990,
        entries=[Entry(7, 100_001 + i, data=bytes(range(64))) for i in range(64)],
    )
    beat = Message(MessageType.HEARTBEAT, to=2, from_=1, term=7, commit=99_990, read_seq=12)
    out: dict[str, float] = {}
    for name, m in (("app64x64", app), ("heartbeat", beat)):
        data = encode_message(m)
        assert decode_message(data) == m
        out[f"{name}_bytes"] = len(data)
        out[f"{name}_encode_us"] = round(best_us(partial(encode_message, m)), 2)
        out[f"{name}_decode_us"] = round(best_us(partial(decode_message, data)), 2)
    return out


async def bench_loopback(total: int, per_turn: int, window: int) -> dict[str, float]:
    received = 0
    progress = asyncio.Event()

    def on_messages(frm: int, msgs: list[tuple[int, Message]]) -> None:
        nonlocal received
        received += len(msgs)
        progress.set()

    a = GrpcTransport(1, "bench", lambda f, m: None, lambda n: None)
    b = GrpcTransport(2, "bench", on_messages, lambda n: None)
    server = grpc.aio.server(options=SERVER_OPTIONS)
    raft_pb2_grpc.add_RaftPeerServicer_to_server(b.servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    a.set_peer(2, f"127.0.0.1:{port}")
    await a.start()
    await b.start()
    try:
        msg = Message(MessageType.HEARTBEAT, to=2, from_=1, term=7, commit=99_990)
        # Warm up: connect and send a few batches.
        for g in range(per_turn):
            a.send(2, g, msg)
        while received < per_turn:
            progress.clear()
            await progress.wait()
        received = 0
        sent = 0
        wall0, cpu0 = time.perf_counter(), time.process_time()
        while received < total:
            while sent < total and sent - received < window * per_turn:
                for g in range(per_turn):
                    a.send(2, g, msg)
                sent += per_turn
                a.flush()
            progress.clear()
            await progress.wait()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        assert a.metrics.drops == 0
        batches = a.metrics.batches_sent
        return {
            "messages": received,
            "mean_batch": round(a.metrics.messages_sent / batches, 1),
            "msgs_per_s": round(received / wall),
            "cpu_us_per_msg": round(cpu / received * 1e6, 2),
        }
    finally:
        await a.stop()
        await b.stop()
        await server.stop(None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--per-turn", default="1,64")
    ap.add_argument("--window", type=int, default=8)
    args = ap.parse_args()
    result: dict[str, object] = {"codec": bench_codec()}
    c = result["codec"]
    assert isinstance(c, dict)
    print(
        f"codec app 64x64 B ({c['app64x64_bytes']} B): encode {c['app64x64_encode_us']} us, "
        f"decode {c['app64x64_decode_us']} us; heartbeat ({c['heartbeat_bytes']} B): "
        f"encode {c['heartbeat_encode_us']} us, decode {c['heartbeat_decode_us']} us"
    )
    for k in (int(x) for x in args.per_turn.split(",")):
        total = args.messages if k > 1 else min(args.messages, 20_000)
        r = asyncio.run(bench_loopback(total, k, args.window))
        print(
            f"loopback {k:>3}/turn: {r['messages']} msgs, mean batch {r['mean_batch']}, "
            f"{r['msgs_per_s']:,} msgs/s, {r['cpu_us_per_msg']} CPU-us/msg (both ends)"
        )
        result[f"loopback_{k}_per_turn"] = r
    print(json.dumps(result))


if __name__ == "__main__":
    main()
