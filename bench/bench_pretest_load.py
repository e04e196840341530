"""Benchmark: many simulated participants posting cursor batches to one ``align-pretest serve``.

Builds a tiny study with the real ``align-pretest build`` (hand-made H.264 variants,
``tests/pretest_fixture.py``), starts the real server (one uvicorn process on a free 127.0.0.1
port, stopped by PID), then runs ``--participants`` participants at once with asyncio + aiohttp:
each starts a session and, for ``--seconds``, collects cursor samples at ``--hz`` and posts them
every ``--batch-s`` seconds (a retried batch keeps its ``batch_id``). Prints a table: participants,
batches, p50/p99 latency, samples sent (acknowledged) vs stored, read back from the session files
(every batch must be stored exactly once).

Usage: ``python bench/bench_pretest_load.py [--participants 200] [--seconds 30] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for folder in (REPO, REPO / "tests"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

__all__ = ["main"]


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    acknowledged: dict[str, int] = field(default_factory=dict)  # batch_id -> samples
    failures: Counter = field(default_factory=Counter)
    duplicates: int = 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(study: Path, port: int, log: Path) -> subprocess.Popen:
    from pretest_fixture import serve_argv

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "wb") as handle:
        server = subprocess.Popen(serve_argv(study, port), stdout=handle, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")


async def post(client, url: str, body: dict, headers: dict, tally: Tally) -> dict:
    """POST with retries on transport errors (same body, so the same batch_id); timed."""
    import aiohttp

    for attempt in range(5):
        started = time.perf_counter()
        try:
            async with client.post(url, json=body, headers=headers) as reply:
                answer = await reply.json()
                status = reply.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.failures[type(exc).__name__] += 1
            await asyncio.sleep(0.2 * 2**attempt)
            continue
        tally.latencies_ms.append((time.perf_counter() - started) * 1000)
        if status != 200:
            tally.failures[f"HTTP {status}"] += 1
            return {}
        return answer
    return {}


async def participant(client, base: str, args: argparse.Namespace, tally: Tally, seed: int) -> None:
    """One participant: a session, then a cursor batch every ``batch_s`` for ``seconds``."""
    rng = random.Random(seed)
    await asyncio.sleep(rng.uniform(0, args.batch_s))  # arrivals spread over one batch period
    session = await post(client, f"{base}/api/sessions", {"batch_id": uuid.uuid4().hex, "consent": True}, {}, tally)
    if not session:
        return
    url, headers = f"{base}/api/sessions/{session['session_id']}/records", {"X-Pretest-Token": session["token"]}
    trials = session["plan"]["trials"]
    per_batch = int(round(args.hz * args.batch_s))
    batches = int(args.seconds / args.batch_s)
    for number in range(batches):
        trial = trials[number % len(trials)]
        start_t = (number * args.batch_s) % max(trial["duration_s"] - args.batch_s, 0.1)
        samples = [[start_t + i / args.hz, rng.random(), rng.random()] for i in range(per_batch)]
        body = {
            "kind": "cursor",
            "batch_id": uuid.uuid4().hex,
            "trial_index": trial["trial_index"],
            "video_id": trial["video_id"],
            "variant": trial["variant"],
            "viewport": {"w": 1280, "h": 800},
            "video_rect": {"x": 100.0, "y": 50.0, "w": 400.0, "h": 700.0},
            "samples": samples,
        }
        await asyncio.sleep(args.batch_s)
        reply = await post(client, url, body, headers, tally)
        if reply.get("ok"):
            tally.acknowledged[body["batch_id"]] = len(samples)
            tally.duplicates += bool(reply.get("duplicate"))


async def drive(base: str, args: argparse.Namespace) -> tuple[Tally, float]:
    import aiohttp

    tally = Tally()
    connector = aiohttp.TCPConnector(limit=args.participants + 10)
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
        await asyncio.gather(*(participant(client, base, args, tally, seed) for seed in range(args.participants)))
    return tally, time.monotonic() - started


def stored_batches(study: Path) -> Counter:
    """Samples per stored cursor batch, and how often each batch id occurs (must be once)."""
    counts: Counter = Counter()
    occurrences: Counter = Counter()
    for path in sorted((study / "sessions").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["kind"] == "cursor":
                counts[record["batch_id"]] += len(record["samples"])
                occurrences[record["batch_id"]] += 1
    return Counter(
        {
            "samples": sum(counts.values()),
            "batches": len(occurrences),
            "repeated": sum(n - 1 for n in occurrences.values()),
        }
    )


def table(args: argparse.Namespace, tally: Tally, stored: Counter, wall_s: float) -> str:
    lat = np.array(tally.latencies_ms) if tally.latencies_ms else np.zeros(1)
    sent = sum(tally.acknowledged.values())
    rows = [
        "| participants | seconds | batches acked | requests | p50 ms | p99 ms | max ms | samples sent (acked) "
        "| samples stored | batches stored | stored twice | failures |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {args.participants} | {wall_s:.1f} | {len(tally.acknowledged)} | {len(tally.latencies_ms)} "
        f"| {np.percentile(lat, 50):.1f} | {np.percentile(lat, 99):.1f} | {lat.max():.1f} | {sent} "
        f"| {stored['samples']} | {stored['batches']} | {stored['repeated']} | {dict(tally.failures) or 0} |",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0, help="how long each participant posts")
    parser.add_argument("--hz", type=float, default=30.0, help="cursor samples per second")
    parser.add_argument("--batch-s", type=float, default=2.0, help="seconds between a participant's batches")
    parser.add_argument("--workdir", type=Path, default=None, help="kept when given (default: a temp dir)")
    args = parser.parse_args(argv)
    from pretest_fixture import build_study_cli, make_pretest_data

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_pretest_"))
    root = make_pretest_data(workdir / "data", videos=3, seconds=12.0)
    study = build_study_cli(root)
    port = free_port()
    server = start_server(study, port, workdir / "server.log")
    try:
        tally, wall_s = asyncio.run(drive(f"http://127.0.0.1:{port}", args))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    stored = stored_batches(study)
    print(table(args, tally, stored, wall_s))
    ok = stored["samples"] == sum(tally.acknowledged.values()) and stored["repeated"] == 0
    print("every acknowledged sample stored exactly once" if ok else "MISMATCH between acknowledged and stored")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
