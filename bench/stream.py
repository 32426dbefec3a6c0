"""Stream benchmark: our worker against the ceiling (bare aiokafka + ONNX), the Faust floor (the worker's one
Faust hop with nothing in it, bench/floor.py) and a naive Faust + scikit-learn agent, on one generated stream
and the same local broker.

    python -m bench.stream [--runs 3] [--events 30000] [--rates 300,1000] [--rate-seconds 20] [--naive-events 20000]
    python -m bench.stream --rss-events 1000000    # worker RSS while 1M mostly-distinct titles flow

"ours-eos" is the same worker with TAGGER_PROCESSING_GUARANTEE=exactly_once. Every Faust contender runs under
the worker's class at log level warn. For each contender: events/s at full speed (a backlog of --events
messages, timed from its first output to its last), end-to-end latency p50/p99 (input CreateTime to output
CreateTime) at full speed and at each offered rate, and the process's peak RSS (VmHWM). Each run measures every
contender in turn; the table holds the median of the runs, and the ratios are taken within each run first.
Starts and stops the local broker (scripts/kafka) unless one runs already. Results are printed and written to
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from bench.report import write_section
from stream_app.settings import Settings
from stream_app.topology.retention import KEPT_FOR_EVER
from tools.replay import MALFORMED_SAMPLES, event_value, mixed_stream, percentile, read_rows
from tools.topics import create_topics as create_topics_on

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = os.environ.get("TAGGER_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
OUTPUT_TOPICS = ("tagged", "review", "duplicates", "deadletter")
WARM_UP_EVENTS = 300
"""Events a contender handles at the offered rate before the timed events of a latency run, which they do not
count in: the first write to a partition of a fresh topic, and its first offset-index entry (after
:data:`BROKER_INDEX_INTERVAL_BYTES`), can each take ~100 ms on the local broker, and a worker that has been
running writes to partitions past both (decisions 0036, 0037)."""
WARM_UP_MALFORMED_EVERY = 15
"""Every this many warm-up messages, one is malformed (the stream has 1 in 100): enough dead letters that the
dead-letter partition, the one written least, gets past its first offset-index entry within the warm-up."""
BROKER_INDEX_INTERVAL_BYTES = 4096
"""Kafka's ``index.interval.bytes`` default: a partition's first offset-index entry is written once its segment
holds more than this."""


@dataclass
class Result:
    name: str
    events_per_second: float
    full_speed_p50_ms: float
    full_speed_p99_ms: float
    rate_ms: dict[float, tuple[float, float]]
    """p50 and p99 latency in ms at each offered rate (events/s)."""
    peak_rss_mb: float


def generate(count: int, seed: int) -> list[tuple[bytes | None, bytes]]:
    """``count`` messages from the dataset: distinct titles, 10% near-duplicates, 1% malformed."""
    return [(m.key, m.value) for m in mixed_stream(read_rows(ROOT / "data/dataset.csv"), count, seed)]


def warm_up_stream(count: int, seed: int) -> list[tuple[bytes | None, bytes]]:
    """``count`` messages of the mix of :func:`generate` with more malformed ones (one in
    :data:`WARM_UP_MALFORMED_EVERY`), each good one with an id and a title that no message of :func:`generate` has
    ("w" before the id, "warm up" before the title), so that none of the timed events is judged a copy of a warm-up
    event; the malformed ones as they are."""
    messages: list[tuple[bytes | None, bytes]] = []
    for n, (key, value) in enumerate(generate(count, seed)):
        if n % WARM_UP_MALFORMED_EVERY == WARM_UP_MALFORMED_EVERY - 1:
            key, value = None, MALFORMED_SAMPLES[n // WARM_UP_MALFORMED_EVERY % len(MALFORMED_SAMPLES)]
        if key is None:  # malformed, kept as it is: rewriting would make some of them good events
            messages.append((key, value))
            continue
        event = json.loads(value)
        event["id"], event["title"] = f"w{event['id']}", f"warm up {event['title']}"
        messages.append((event["id"].encode(), json.dumps(event, ensure_ascii=False).encode()))
    return messages


async def create_topics(names: Sequence[str]) -> None:
    """Create a run's single-partition topics (:func:`topics_env`'s) on the benchmark's broker, and wait until it
    serves them. The review topic is made as the worker makes it: the worker refuses one that deletes records."""
    await create_topics_on(BOOTSTRAP, names, configs={n: KEPT_FOR_EVER for n in names if n.endswith("-review")})


async def produce(topic: str, messages: Sequence[tuple[bytes | None, bytes]], rate: float = 0.0) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5 if rate == 0 else 0, acks=1)
    await producer.start()
    started = time.monotonic()
    try:
        for index, (key, value) in enumerate(messages):
            if rate:
                delay = started + index / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def collect(
    inputs: str,
    outputs: Sequence[str],
    expected: int,
    timeout: float,
    on_progress: Any = None,
    untimed: Collection[bytes] = (),
) -> tuple[list[float], list[float]]:
    """Wait for ``expected`` output records; returns their CreateTimes (s) and latencies (ms) against the inputs.

    A latency is output CreateTime minus the CreateTime of the input with the same key (malformed inputs have
    none and count for throughput only); outputs keyed by one of ``untimed`` have none either.
    """
    # read_committed: an exactly-once contender's records count when their transaction commits, as for its users.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=BOOTSTRAP,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 << 20,
        isolation_level="read_committed",
    )
    await consumer.start()
    partitions = [TopicPartition(t, 0) for t in outputs]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    out: list[tuple[bytes | None, int]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200, max_records=10_000)).values():
                out.extend((record.key, record.timestamp) for record in records)
            if on_progress is not None:
                on_progress(len(out))
    finally:
        await consumer.stop()
    sent = await input_times(inputs)
    latencies = [float(ts - sent[key]) for key, ts in out if key in sent and key not in untimed]
    return [ts / 1000 for _, ts in out], latencies


async def input_times(topic: str) -> dict[bytes, int]:
    """CreateTime (ms) of each keyed input message."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=BOOTSTRAP, enable_auto_commit=False, max_partition_fetch_bytes=4 << 20
    )
    await consumer.start()
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    end = (await consumer.end_offsets([tp]))[tp]
    sent: dict[bytes, int] = {}
    try:
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(timeout_ms=200, max_records=10_000)).values():
                sent.update((r.key, r.timestamp) for r in records if r.key is not None)
    finally:
        await consumer.stop()
    return sent


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """A memory figure of a process from /proc/<pid>/status: VmHWM (peak RSS) or VmRSS (current), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start(name: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    worker = [sys.executable, "-m", "stream_app", "worker", "-l", "warn"]
    commands = {
        "ours": worker,
        "ours-eos": worker,
        "ceiling": [sys.executable, "-m", "bench.ceiling"],
        "naive": [sys.executable, "-m", "faust", "-A", "bench.naive", "worker", "-l", "warn"],
        "floor": [sys.executable, "-m", "faust", "-A", "bench.floor", "worker", "-l", "warn"],
    }
    if name == "ours-eos":
        env = {**env, "TAGGER_PROCESSING_GUARANTEE": "exactly_once"}
    # Faust creates only the last level of its data directory.
    Path(env["TAGGER_DATA_DIR"]).parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        commands[name], cwd=ROOT, env={**os.environ, **env}, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def topics_env(prefix: str) -> tuple[dict[str, str], list[str]]:
    names = {kind: f"{prefix}-{kind}" for kind in ("content", *OUTPUT_TOPICS)}
    env = {
        "TAGGER_KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
        "TAGGER_APP_ID": prefix,
        "TAGGER_INPUT_TOPIC": names["content"],
        "TAGGER_TAGGED_TOPIC": names["tagged"],
        "TAGGER_REVIEW_TOPIC": names["review"],
        "TAGGER_DUPLICATES_TOPIC": names["duplicates"],
        "TAGGER_DEADLETTER_TOPIC": names["deadletter"],
        # The run's own, made by the worker and deleted with the run's topics: not a default an older worker made.
        "TAGGER_FEEDBACK_TOPIC": f"{prefix}-feedback",
        "TAGGER_MODEL_DIR": str(ROOT / "artifacts/model"),
        "TAGGER_WEB_PORT": str(17000 + random.randint(0, 999)),
        "TAGGER_DATA_DIR": str(ROOT / ".run" / "bench" / "data" / prefix),
    }
    return env, list(names.values())


async def wait_ready(group: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    """Wait until the contender's consumer group is stable (it has joined and owns the input partition)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{group}: contender exited with status {process.returncode}")
            try:
                described = await admin.describe_consumer_groups([group])
            except GroupCoordinatorNotAvailableError:  # a fresh broker makes its offsets topic on first use
                await asyncio.sleep(0.5)
                continue
            groups = [g for response in described for g in response.groups]
            if any(g[2] == "Stable" and g[5] for g in groups):
                await asyncio.sleep(3)  # the worker's title index loads from its (empty) topic
                return
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
    raise RuntimeError(f"{group}: not ready after {timeout:.0f} s")


def alive(process: subprocess.Popen[bytes], name: str) -> None:
    if process.poll() is not None:
        raise RuntimeError(f"{name}: contender exited with status {process.returncode}; see .run/bench/{name}-*.log")


def stop(process: subprocess.Popen[bytes], env: dict[str, str], *, topics: bool = True) -> None:
    """Stop a contender and delete its data directory and, unless ``topics`` is false (another contender still
    reads them), its run's topics."""
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    shutil.rmtree(env["TAGGER_DATA_DIR"], ignore_errors=True)
    if topics:
        asyncio.run(delete_topics(env["TAGGER_APP_ID"]))


async def delete_topics(prefix: str) -> list[str]:
    """Delete the topics of one run (``prefix`` is its app id, which starts the name of every topic it made);
    returns their names. Left behind, every run's topics stay in the broker's metadata: each contender started
    later fetches them all, and the broker slows down with them."""
    return await delete_topics_where(lambda name: name.startswith(f"{prefix}-"))


async def delete_topics_where(chosen: Callable[[str], bool]) -> list[str]:
    """Delete every topic of the broker whose name is ``chosen``; returns their names."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        names = sorted(filter(chosen, await admin.list_topics()))
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


def measure(
    name: str,
    messages: list[tuple[bytes | None, bytes]],
    rates: Sequence[float],
    rate_seconds: float,
    warm_up: Sequence[tuple[bytes | None, bytes]] = (),
) -> Result:
    run_dir = ROOT / ".run" / "bench"
    run_dir.mkdir(parents=True, exist_ok=True)
    # Full speed: a backlog is waiting when the contender starts.
    env, names = topics_env(f"bench-{name}-{uuid.uuid4().hex[:6]}")
    asyncio.run(create_topics(names))
    asyncio.run(produce(names[0], messages))
    process = start(name, env, run_dir / f"{name}-full.log")
    try:
        # Every contender emits exactly one record per input message.
        out_times, latencies = asyncio.run(
            collect(names[0], names[1:], len(messages), timeout=900, on_progress=lambda _: alive(process, name))
        )
        rss = rss_mb(process.pid)
    finally:
        stop(process, env)
    if len(out_times) < len(messages):
        raise RuntimeError(f"{name}: {len(out_times)} outputs for {len(messages)} inputs")
    throughput = (len(out_times) - 1) / max(max(out_times) - min(out_times), 1e-9)
    rate_ms: dict[float, tuple[float, float]] = {}
    for rate in rates:
        # Fixed rate: the contender is running and idle when the traffic starts.
        env, names = topics_env(f"bench-{name}-rate-{uuid.uuid4().hex[:6]}")
        asyncio.run(create_topics(names))
        process = start(name, env, run_dir / f"{name}-rate.log")
        try:
            asyncio.run(wait_ready(env["TAGGER_APP_ID"], process))

            def watch(_: int, p: subprocess.Popen[bytes] = process) -> None:
                alive(p, name)

            if warm_up:  # every kind of output written once, at the rate, before the timed events
                asyncio.run(produce(names[0], warm_up, rate))
                asyncio.run(collect(names[0], names[1:], len(warm_up), timeout=120, on_progress=watch))
            paced = messages[: int(rate * rate_seconds)]
            asyncio.run(produce(names[0], paced, rate))
            _, rate_latencies = asyncio.run(
                collect(
                    names[0],
                    names[1:],
                    len(warm_up) + len(paced),
                    timeout=300,
                    on_progress=watch,
                    untimed={key for key, _ in warm_up if key is not None},
                )
            )
            rss = max(rss, rss_mb(process.pid))
        finally:
            stop(process, env)
        rate_ms[rate] = (percentile(rate_latencies, 0.5), percentile(rate_latencies, 0.99))
    return Result(name, throughput, percentile(latencies, 0.5), percentile(latencies, 0.99), rate_ms, rss)


def distinct_titles(begin: int, end: int) -> list[tuple[bytes | None, bytes]]:
    """Events ``begin`` to ``end`` of a stream of distinct titles (dataset rows with a serial number)."""
    rows = read_rows(ROOT / "data/dataset.csv")
    events = (
        {**rows[n % len(rows)], "id": f"m{n}", "title": f"{rows[n % len(rows)]['title']} {n}"}
        for n in range(begin, end)
    )
    return [(str(e["id"]).encode(), event_value(e)) for e in events]


def seconds_to_ready(process: subprocess.Popen[bytes], port: str, started: float, timeout: float = 900.0) -> float:
    """Seconds from ``started`` until the worker's ``/ready`` answers 200 (polled every 0.1 s)."""
    deadline = started + timeout
    while time.monotonic() < deadline:
        alive(process, "ours")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as answer:  # noqa: S310
                if answer.status == 200:
                    return time.monotonic() - started
        except (OSError, urllib.error.HTTPError):
            pass  # not listening yet, or 503 while it loads
        time.sleep(0.1)
    raise RuntimeError(f"ours: not ready {timeout:.0f} s after its start")


def measure_rss(count: int) -> str:
    """Stream ``count`` distinct titles through our worker (default TTL, memory store); sample its RSS. Then stop it
    and start another worker, which loads the whole index from its topic: time to ``/ready`` and its RSS."""
    env, names = topics_env(f"bench-rss-{uuid.uuid4().hex[:6]}")
    asyncio.run(create_topics(names))
    run_dir = ROOT / ".run" / "bench"
    run_dir.mkdir(parents=True, exist_ok=True)
    samples: list[tuple[int, float]] = []
    started = time.monotonic()
    process = start("ours", env, run_dir / "ours-rss.log")

    def sample(done: int) -> None:
        if not samples or done - samples[-1][0] >= count // 10:
            alive(process, "ours")
            rss = rss_mb(process.pid, "VmRSS")
            samples.append((done, rss))
            print(f"  {done} outputs, RSS {rss:.0f} MB", flush=True)

    restarted_env = {**env, "TAGGER_DATA_DIR": env["TAGGER_DATA_DIR"] + "-restarted"}
    restarted = None
    try:
        empty_ready = seconds_to_ready(process, env["TAGGER_WEB_PORT"], started)
        asyncio.run(wait_ready(env["TAGGER_APP_ID"], process))
        sample(0)
        chunk = 100_000
        for begin in range(0, count, chunk):
            asyncio.run(produce(names[0], distinct_titles(begin, min(count, begin + chunk))))
        out_times, _ = asyncio.run(collect(names[0], names[1:], count, timeout=3600, on_progress=sample))
        final_rss, peak = rss_mb(process.pid, "VmRSS"), rss_mb(process.pid)
        stop(process, env, topics=False)
        started = time.monotonic()
        restarted = start("ours", restarted_env, run_dir / "ours-rss-restarted.log")
        full_ready = seconds_to_ready(restarted, restarted_env["TAGGER_WEB_PORT"], started)
        ready_rss, ready_peak = rss_mb(restarted.pid, "VmRSS"), rss_mb(restarted.pid)
    finally:
        if restarted is not None:
            stop(restarted, restarted_env, topics=False)
        stop(process, env)
    progress = ", ".join(f"{done // 1000}k: {rss:.0f}" for done, rss in samples)
    return (
        f"Worker RSS while {count:,} events with distinct titles flow (default TTL {Settings().dedupe_ttl_days} days; "
        f"one worker, so it holds the whole title index): {len(out_times):,} outputs, "
        f"RSS after the last {final_rss:.0f} MB, peak (VmHWM) "
        f"{peak:.0f} MB; target < 400 MB. RSS in MB by outputs: {progress}.\n\n"
        f"A worker started after it stopped loads the whole index from its topic before `/ready` answers 200: "
        f"ready {full_ready:.1f} s after its start (the first worker, with the index empty: {empty_ready:.1f} s), "
        f"RSS then {ready_rss:.0f} MB, peak (VmHWM) {ready_peak:.0f} MB."
    )


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stream", description=__doc__)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--naive-events", type=int, default=20_000, help="slice of the stream the naive peer gets")
    parser.add_argument("--rates", default="300,1000", help="offered rates for the latency runs, events/s")
    parser.add_argument("--rate-seconds", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=3, help="runs of every contender; the table shows medians")
    parser.add_argument("--contenders", default="ceiling,floor,ours,ours-eos,naive")
    parser.add_argument("--rss-events", type=int, default=0, help="instead: worker RSS over this many events")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print the results, leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    rates = [float(rate) for rate in args.rates.split(",")]
    contenders = args.contenders.split(",")
    shortest = min(args.events, args.naive_events) if "naive" in contenders else args.events
    if not args.rss_events and any(shortest < rate * args.rate_seconds for rate in rates):
        # Each rate's run takes its events off the front of the stream: a shorter stream would end it early, and
        # its p99 would then be that of a few seconds.
        parser.error(
            f"a stream of {shortest} events lasts less than --rate-seconds {args.rate_seconds:g} at "
            f"{max(rates):g} events/s: raise --events (and --naive-events) or lower --rate-seconds"
        )
    was_running = subprocess.run([ROOT / "scripts/kafka", "status"], capture_output=True).returncode == 0
    subprocess.run([ROOT / "scripts/kafka", "start"], check=True)
    if not (ROOT / "artifacts/model/model.json").exists():
        subprocess.run([sys.executable, "-m", "model_export", "--out", "artifacts/model"], cwd=ROOT, check=True)
    load_before = load_average()
    try:
        if args.rss_events:
            body = measure_rss(args.rss_events) + f"\n\nLoad average (1, 5, 15 min) at start: {load_before}."
            print(body)
            if not args.no_write:
                write_section(
                    "stream_rss",
                    "Worker memory over a long stream",
                    body,
                    f"python -m bench.stream --rss-events {args.rss_events}",
                )
            return 0
        messages = generate(args.events, args.seed)
        warm_up = warm_up_stream(WARM_UP_EVENTS, args.seed)
        runs: list[list[Result]] = []
        for run in range(args.runs):
            results = []
            for name in contenders:
                print(f"run {run + 1}: measuring {name} ...", flush=True)
                stream = messages[: args.naive_events] if name == "naive" else messages
                results.append(measure(name, stream, rates, args.rate_seconds, warm_up))
                print(json.dumps(results[-1].__dict__, default=str), flush=True)
            runs.append(results)
    finally:
        if not was_running:
            subprocess.run([ROOT / "scripts/kafka", "stop"], check=False)
    body = render(runs, args, rates, len(messages), load_before)
    print(body)
    if not args.no_write:
        write_section(
            "stream",
            "Stream: worker vs ceiling, Faust floor and naive",
            body,
            f"python -m bench.stream --runs {args.runs} --events {args.events} --naive-events "
            f"{args.naive_events} --rates {args.rates} --rate-seconds {args.rate_seconds:.0f}",
        )
    return 0


RATIOS = (
    ("ours", "ceiling", "target >= 0.6x"),
    ("floor", "ceiling", "what one Faust hop with no work in it leaves"),
    ("ours", "floor", ""),
    ("ours", "naive", "target >= 10x"),
    ("ours-eos", "ours", "exactly-once / at-least-once, target >= 0.8x"),
)
P99_RATIOS = (
    ("ours", 300.0, 2.0),
    ("ours-eos", 300.0, 3.0),
    ("ours", 1000.0, 3.0),
)


def render(
    runs: list[list[Result]], args: argparse.Namespace, rates: Sequence[float], events: int, load_before: str
) -> str:
    by_run = [{r.name: r for r in results} for results in runs]
    names = [r.name for r in runs[0]]

    def median(values: list[float]) -> float:
        return statistics.median(values)

    def across(name: str, value: Any) -> float:
        return median([value(run[name]) for run in by_run])

    lines = [
        f"One generated stream of {events:,} events from `data/dataset.csv` (89% distinct titles, 10% near-duplicates, "
        f"1% malformed), one local broker, contenders one after another on fresh single-partition topics, "
        f"{len(runs)} runs; each figure is the median of the runs. "
        f"Throughput: backlog pre-produced, first output to last output. Latency: input CreateTime to output "
        f"CreateTime, at full speed (backlog) and at each offered rate for {args.rate_seconds:.0f} s, after "
        f"{WARM_UP_EVENTS} warm-up events at that rate (of their own titles, one in {WARM_UP_MALFORMED_EVERY} "
        f"malformed; not timed) have written past the first offset-index entry of every output partition. "
        f"The naive peer gets the first {min(args.naive_events, events):,} events of the stream. "
        f"Peak RSS: VmHWM of the contender's process. Load average (1, 5, 15 min) at start: {load_before}; "
        f"at end: {load_average()} (machine shared with other jobs).",
        "",
        "| contender | events | events/s (full speed) | p50 / p99 ms, full speed | "
        + " | ".join(f"p50 / p99 ms at {rate:.0f}/s" for rate in rates)
        + " | peak RSS MB |",
        "|---|---:|---:|---:|" + "---:|" * len(rates) + "---:|",
    ]
    for name in names:
        events_used = min(args.naive_events, events) if name == "naive" else events
        at_rates = " | ".join(
            f"{across(name, lambda r, rate=rate: r.rate_ms[rate][0]):.1f} / "
            f"{across(name, lambda r, rate=rate: r.rate_ms[rate][1]):.1f}"
            for rate in rates
        )
        lines.append(
            f"| {name} | {events_used:,} | {across(name, lambda r: r.events_per_second):.0f} | "
            f"{across(name, lambda r: r.full_speed_p50_ms):.0f} / {across(name, lambda r: r.full_speed_p99_ms):.0f} | "
            f"{at_rates} | {across(name, lambda r: r.peak_rss_mb):.0f} |"
        )
    lines.append("")
    for top, bottom, note in RATIOS:
        if top in names and bottom in names:
            each = [run[top].events_per_second / run[bottom].events_per_second for run in by_run]
            runs_text = ", ".join(f"{ratio:.2f}" for ratio in each)
            lines.append(
                f"- {top} / {bottom} throughput: {median(each):.2f}x (runs: {runs_text}){'; ' + note if note else ''}"
            )
    for name, rate, bound in P99_RATIOS:
        if name in names and "ceiling" in names and rate in rates:
            each = [run[name].rate_ms[rate][1] / max(run["ceiling"].rate_ms[rate][1], 1e-9) for run in by_run]
            runs_text = ", ".join(f"{ratio:.2f}" for ratio in each)
            lines.append(
                f"- {name} / ceiling p99 at {rate:.0f} events/s: {median(each):.2f}x (runs: {runs_text}); "
                f"target <= {bound:.0f}x, and under 100 ms: {across(name, lambda r, rate=rate: r.rate_ms[rate][1]):.1f} ms"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
