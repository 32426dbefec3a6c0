"""Stream benchmark: our worker against the ceiling (bare aiokafka + ONNX) and a naive Faust + scikit-learn
agent, on one generated stream and the same local broker, in one run.

    python -m bench.stream [--events 20000] [--rate 500] [--rate-seconds 20]

For each contender: events/s at full speed (a backlog of --events messages, timed from its first output
to its last), end-to-end latency p50/p99 (input CreateTime to output CreateTime) at a fixed offered rate,
and the process's peak RSS. Results are printed and written to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.report import write_section
from stream_app.replay import mixed_stream, percentile, read_rows

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = os.environ.get("TAGGER_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
OUTPUT_TOPICS = ("tagged", "review", "duplicates", "deadletter")


@dataclass
class Result:
    name: str
    events_per_second: float
    full_speed_p50_ms: float
    full_speed_p99_ms: float
    rate_p50_ms: float
    rate_p99_ms: float
    peak_rss_mb: float


def generate(count: int, seed: int) -> list[tuple[bytes | None, bytes]]:
    """``count`` messages from the dataset: distinct titles, 10% near-duplicates, 1% malformed."""
    return [(m.key, m.value) for m in mixed_stream(read_rows(ROOT / "data/dataset.csv"), count, seed)]


async def create_topics(names: Sequence[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, num_partitions=1, replication_factor=1) for n in names])
    finally:
        await admin.close()


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
    inputs: str, outputs: Sequence[str], expected: int, timeout: float
) -> tuple[list[float], list[float]]:
    """Wait for ``expected`` output records; returns their CreateTimes and their latencies against the inputs."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    await consumer.start()
    partitions = [TopicPartition(t, 0) for t in (inputs, *outputs)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    sent: dict[bytes, int] = {}
    out_times: list[float] = []
    latencies: list[float] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out_times) < expected and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                for record in records:
                    if tp.topic == inputs:
                        if record.key is not None:
                            sent[record.key] = record.timestamp
                        continue
                    out_times.append(record.timestamp / 1000)
                    if record.key in sent:
                        latencies.append(record.timestamp - sent[record.key])
    finally:
        await consumer.stop()
    return out_times, latencies


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start(name: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    commands = {
        "ours": [sys.executable, "-m", "stream_app", "worker", "-l", "warn"],
        "ceiling": [sys.executable, "-m", "bench.ceiling"],
        "naive": [sys.executable, "-m", "faust", "-A", "bench.naive", "worker", "-l", "warn"],
    }
    return subprocess.Popen(commands[name], cwd=ROOT, env={**os.environ, **env}, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)


def topics_env(prefix: str) -> tuple[dict[str, str], list[str]]:
    names = {kind: f"{prefix}-{kind}" for kind in ("content", *OUTPUT_TOPICS)}
    env = {
        "TAGGER_KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP, "TAGGER_APP_ID": prefix, "TAGGER_INPUT_TOPIC": names["content"],
        "TAGGER_TAGGED_TOPIC": names["tagged"], "TAGGER_REVIEW_TOPIC": names["review"],
        "TAGGER_DUPLICATES_TOPIC": names["duplicates"], "TAGGER_DEADLETTER_TOPIC": names["deadletter"],
        "TAGGER_MODEL_DIR": str(ROOT / "artifacts/model"), "TAGGER_WEB_PORT": str(17000 + random.randint(0, 999)),
        "TAGGER_DATA_DIR": f"/tmp/{prefix}",
    }
    return env, list(names.values())


def measure(name: str, messages: list[tuple[bytes | None, bytes]], rate: float, rate_seconds: float) -> Result:
    run_dir = ROOT / ".run" / "bench"
    run_dir.mkdir(parents=True, exist_ok=True)
    # Full speed: a backlog is waiting when the contender starts.
    env, names = topics_env(f"bench-{name}-{uuid.uuid4().hex[:6]}")
    asyncio.run(create_topics(names))
    asyncio.run(produce(names[0], messages))
    expected = len(messages) if name == "ours" else len(messages)  # every contender emits one record per input
    process = start(name, env, run_dir / f"{name}-full.log")
    try:
        out_times, latencies = asyncio.run(collect(names[0], names[1:], expected, timeout=900))
        rss = peak_rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait(30)
    throughput = (len(out_times) - 1) / max(max(out_times) - min(out_times), 1e-9)
    # Fixed rate: the contender is running and idle when the traffic starts.
    env, names = topics_env(f"bench-{name}-rate-{uuid.uuid4().hex[:6]}")
    asyncio.run(create_topics(names))
    process = start(name, env, run_dir / f"{name}-rate.log")
    try:
        time.sleep(25 if name != "ceiling" else 5)  # Faust start-up and group join (the naive one also trains)
        paced = messages[: int(rate * rate_seconds)]
        asyncio.run(produce(names[0], paced, rate))
        _, rate_latencies = asyncio.run(collect(names[0], names[1:], len(paced), timeout=300))
        rss = max(rss, peak_rss_mb(process.pid))
    finally:
        process.terminate()
        process.wait(30)
    return Result(
        name, throughput, percentile(latencies, 0.5), percentile(latencies, 0.99),
        percentile(rate_latencies, 0.5), percentile(rate_latencies, 0.99), rss,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stream", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=500.0, help="offered rate for the latency run, events/s")
    parser.add_argument("--rate-seconds", type=float, default=20.0)
    parser.add_argument("--contenders", default="ceiling,ours,naive")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    was_running = subprocess.run([ROOT / "scripts/kafka", "status"], capture_output=True).returncode == 0
    subprocess.run([ROOT / "scripts/kafka", "start"], check=True)
    if not (ROOT / "artifacts/model/model.json").exists():
        subprocess.run([sys.executable, "-m", "model_export"], cwd=ROOT, check=True)
    messages = generate(args.events, args.seed)
    results = []
    try:
        for name in args.contenders.split(","):
            print(f"measuring {name} ...", flush=True)
            results.append(measure(name, messages, args.rate, args.rate_seconds))
            print(json.dumps(results[-1].__dict__), flush=True)
    finally:
        if not was_running:
            subprocess.run([ROOT / "scripts/kafka", "stop"], check=False)
    by_name = {r.name: r for r in results}
    lines = [
        f"One stream of {len(messages)} events (89% distinct, 10% near-duplicates, 1% malformed); latency run at "
        f"{args.rate:.0f} events/s offered for {args.rate_seconds:.0f} s. Latency is input CreateTime to output "
        "CreateTime.",
        "",
        "| contender | events/s (full speed) | p50 / p99 ms (full speed, backlog) | "
        f"p50 / p99 ms at {args.rate:.0f}/s | peak RSS MB |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r.name} | {r.events_per_second:.0f} | {r.full_speed_p50_ms:.0f} / {r.full_speed_p99_ms:.0f} "
                     f"| {r.rate_p50_ms:.1f} / {r.rate_p99_ms:.1f} | {r.peak_rss_mb:.0f} |")
    if "ours" in by_name and "ceiling" in by_name:
        lines.append(f"\nours / ceiling throughput: {by_name['ours'].events_per_second / by_name['ceiling'].events_per_second:.2f}x")
    if "ours" in by_name and "naive" in by_name:
        lines.append(f"ours / naive throughput: {by_name['ours'].events_per_second / by_name['naive'].events_per_second:.1f}x")
    body = "\n".join(lines)
    print(body)
    write_section("stream", "Stream: worker vs ceiling vs naive", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
