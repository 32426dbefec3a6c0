"""Title index replication delay: two workers of one group, one taking the whole stream (one input partition),
the other following the index topic. The delay of each change is from the writer's produce (the record's
CreateTime) to the follower applying it, as ``content_tagger_index_replication_delay_seconds`` observes it; p50 and
p99 are read off that histogram's buckets by linear interpolation, as Prometheus' ``histogram_quantile`` does.

    python -m bench.replication [--rate 300] [--seconds 20] [--runs 3]

Copies of one title reaching two workers closer together than this delay are both checked before the other's
change arrives; each batch's second look (decision 0218) then waits about this long for its own changes, and
tells them apart.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Sequence

from bench.report import write_section
from bench.stream import ROOT, alive, collect, create_topics, generate, produce, start, stop, topics_env, wait_ready

METRIC = "content_tagger_index_replication_delay_seconds"


def buckets(metrics_text: str) -> list[tuple[float, float]]:
    """``(upper bound, cumulative count)`` of the histogram, in order."""
    found = re.findall(rf'^{METRIC}_bucket{{le="([^"]+)"}} (\S+)$', metrics_text, re.MULTILINE)
    return [(float(bound), float(count)) for bound, count in found]


def quantile(q: float, histogram: list[tuple[float, float]]) -> float:
    """The ``q`` quantile by linear interpolation within the bucket that holds it (Prometheus' method)."""
    total = histogram[-1][1]
    rank, lower, below = q * total, 0.0, 0.0
    for bound, count in histogram:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = bound, count
    return lower


def settled_histogram(url: str, quiet_seconds: float = 3.0, limit_seconds: float = 120.0) -> list[tuple[float, float]]:
    """The follower's delay histogram once it has applied everything: its count unchanged for ``quiet_seconds``.

    The writer's outputs can all be out while the follower still applies the last changes; read then, the
    histogram would leave out the latest, slowest changes.
    """

    def read() -> list[tuple[float, float]]:
        return buckets(urllib.request.urlopen(url, timeout=10).read().decode())  # noqa: S310 - loopback

    deadline = time.monotonic() + limit_seconds
    histogram, quiet_since = read(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < quiet_seconds:
        time.sleep(0.5)
        latest = read()
        if latest[-1][1] != histogram[-1][1]:
            histogram, quiet_since = latest, time.monotonic()
    return histogram


def measure(rate: float, seconds: float) -> tuple[float, float, float]:
    """One run: p50 and p99 in ms, and the number of changes applied by the follower."""
    env, names = topics_env(f"bench-replication-{uuid.uuid4().hex[:6]}")
    asyncio.run(create_topics(names))
    follower_env = {
        **env,
        "TAGGER_WEB_PORT": str(int(env["TAGGER_WEB_PORT"]) + 1000),
        "TAGGER_DATA_DIR": env["TAGGER_DATA_DIR"] + "-follower",
    }
    run_dir = ROOT / ".run" / "bench"
    run_dir.mkdir(parents=True, exist_ok=True)
    writer = start("ours", env, run_dir / "replication-writer.log")
    follower = None
    try:
        asyncio.run(wait_ready(env["TAGGER_APP_ID"], writer))
        follower = start("ours", follower_env, run_dir / "replication-follower.log")
        asyncio.run(wait_ready(env["TAGGER_APP_ID"], follower))
        messages = generate(int(rate * seconds), seed=7)
        asyncio.run(produce(names[0], messages, rate))
        asyncio.run(
            collect(names[0], names[1:], len(messages), timeout=300, on_progress=lambda _: alive(writer, "writer"))
        )
        histogram = settled_histogram(f"http://127.0.0.1:{follower_env['TAGGER_WEB_PORT']}/metrics")
    finally:
        if follower is not None:
            stop(follower, follower_env, topics=False)
        stop(writer, env)
    return quantile(0.5, histogram) * 1000, quantile(0.99, histogram) * 1000, histogram[-1][1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replication", description=__doc__)
    parser.add_argument("--rate", type=float, default=300.0, help="offered input rate, events/s")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    was_running = subprocess.run([ROOT / "scripts/kafka", "status"], capture_output=True).returncode == 0
    subprocess.run([ROOT / "scripts/kafka", "start"], check=True)
    if not (ROOT / "artifacts/model/model.json").exists():
        subprocess.run([sys.executable, "-m", "model_export", "--out", "artifacts/model"], cwd=ROOT, check=True)
    try:
        runs = [measure(args.rate, args.seconds) for _ in range(args.runs)]
    finally:
        if not was_running:
            subprocess.run([ROOT / "scripts/kafka", "stop"], check=False)
    rows = "\n".join(f"| {n + 1} | {p50:.1f} | {p99:.1f} | {count:,.0f} |" for n, (p50, p99, count) in enumerate(runs))
    body = (
        f"Two workers, one local broker; the writer takes {args.rate:.0f} events/s for {args.seconds:.0f} s, the "
        f"follower applies its title index changes. Delay: writer's produce to follower's apply.\n\n"
        f"| run | p50 ms | p99 ms | changes applied |\n|---:|---:|---:|---:|\n{rows}\n\n"
        f"Median of {len(runs)} runs: p50 {statistics.median(r[0] for r in runs):.1f} ms, "
        f"p99 {statistics.median(r[1] for r in runs):.1f} ms."
    )
    print(body)
    if not args.no_write:
        write_section(
            "replication",
            "Title index replication delay",
            body,
            f"python -m bench.replication --rate {args.rate:.0f} --seconds {args.seconds:.0f} --runs {args.runs}",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
