"""Profile of the worker's per-event path on a real broker, and interleaved comparisons of worker variants.

    python -m bench.profile [--events 20000] [--runs 3] [--contender NAME=TREE [WORKER ARGS]] ...

Each contender is the worker (``python -m stream_app [FAUST OPTIONS] worker -l warn``) run from a source tree:
``--contender "before=/tmp/base" --contender "after=."`` compares two trees, and ``--contender "uvloop=. -L
uvloop"`` one tree under another event loop. The default is this tree alone.

For each run and contender in turn (A B A B ...): the worker starts on fresh single-partition topics, and once
its consumer group is stable, ``--events`` generated events (bench.stream's stream) are produced at full speed.
Measured: events/s from its first output to its last, and the worker's CPU (user + system, all threads) per
event between ready and its last output. The table holds the median of the runs, and each contender's ratio to
the first one, taken within each run first.

Then each contender runs once more under py-spy (a sampling profiler attached once the worker is ready, so start-up
is left out) and its samples are grouped by whose code was running: the innermost frame that belongs to a known
part wins, so the standard library's ``json`` counts for the schema code that called it. The main thread (the
event loop) and the model's thread are reported apart. Results are printed and written to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.errors import GroupCoordinatorNotAvailableError

from bench.report import write_section
from bench.stream import (
    ROOT,
    collect,
    create_topics,
    generate,
    load_average,
    produce,
    stop,
    topics_env,
    wait_ready,
)

GROUPS: tuple[tuple[str, str], ...] = (
    # (group, regular expression on "function (file" of a frame; py-spy names files relative to sys.path)
    ("JSON parse, validation, encode", r"stream_app/schema\.py|^encode \(stream_app/delivery/publish\.py"),
    ("dedupe", r"stream_app/(dedupe|lsh)\.py|stream_app/dedupe/|stream_app/title_index/"),
    ("metrics", r"[(/]prometheus_client/|stream_app/metrics\.py"),
    ("model", r"[(/]onnxruntime/|stream_app/classifier\.py"),
    ("model thread waiting for a batch", r"^_worker \(concurrent/futures/thread\.py"),
    ("aiokafka", r"[(/](aiokafka|kafka)/"),
    ("event loop waiting (epoll)", r"^EpollSelector\.select \("),
    ("event loop, Faust", r"[(/](faust|mode|uvloop)/|[(/]selectors\.py"),
    ("our own code", r"stream_app/"),
)
"""Parts of the worker, most specific first; a frame of none of them (the rest of the standard library) counts
for the frame that called it."""


@dataclass
class Contender:
    name: str
    tree: Path
    args: list[str]

    @classmethod
    def parse(cls, spec: str) -> Contender:
        first, *args = shlex.split(spec)
        name, _, tree = first.partition("=")
        return cls(name, (ROOT / (tree or ".")).resolve(), args)


@dataclass
class Measured:
    events_per_second: float
    cpu_us_per_event: float


@dataclass
class Profile:
    """Samples per group and per innermost function, for the main thread and for the model's thread."""

    main: Counter[str] = field(default_factory=Counter)
    main_functions: Counter[tuple[str, str]] = field(default_factory=Counter)
    model: Counter[str] = field(default_factory=Counter)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_worker(contender: Contender, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    # -m puts the working directory first on sys.path, so the worker runs the contender's tree.
    command = [sys.executable, "-m", "stream_app", *contender.args, "worker", "-l", "warn"]
    Path(env["TAGGER_DATA_DIR"]).parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        command, cwd=contender.tree, env={**os.environ, **env}, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def run_once(contender: Contender, messages: list[tuple[bytes | None, bytes]], profile_to: Path | None) -> Measured:
    """One run of ``contender`` over ``messages``; with ``profile_to``, py-spy's raw samples are written there."""
    run_dir = ROOT / ".run" / "bench"
    run_dir.mkdir(parents=True, exist_ok=True)
    env, names = topics_env(f"bench-profile-{contender.name}-{uuid.uuid4().hex[:6]}")
    asyncio.run(create_topics(names))
    process = start_worker(contender, env, run_dir / f"profile-{contender.name}.log")
    spy: subprocess.Popen[bytes] | None = None
    try:
        for _ in range(10):  # a broker just started has no group coordinator for a few seconds
            try:
                asyncio.run(wait_ready(env["TAGGER_APP_ID"], process))
                break
            except GroupCoordinatorNotAvailableError:
                time.sleep(2)
        if profile_to is not None:
            spy = subprocess.Popen(
                [
                    Path(sys.executable).parent / "py-spy",
                    "record",
                    "--pid",
                    str(process.pid),
                    "--format",
                    "raw",
                    "--threads",
                    "--rate",
                    "250",
                    "--output",
                    str(profile_to),
                ],
                stdout=subprocess.DEVNULL,
                stderr=(run_dir / "py-spy.log").open("wb"),
            )
            time.sleep(1)  # py-spy attaches
        cpu_before = cpu_seconds(process.pid)
        asyncio.run(produce(names[0], messages))
        out_times, _ = asyncio.run(collect(names[0], names[1:], len(messages), timeout=900))
        cpu_used = cpu_seconds(process.pid) - cpu_before
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        stop(process, env)
    if len(out_times) < len(messages):
        raise RuntimeError(f"{contender.name}: {len(out_times)} outputs for {len(messages)} inputs")
    span = max(max(out_times) - min(out_times), 1e-9)
    return Measured((len(out_times) - 1) / span, cpu_used / len(messages) * 1e6)


FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]*)(?::\d+)?\)$")


def group_of(frame: str) -> str | None:
    match = FRAME.match(frame)
    text = f"{match['function']} ({match['file']}" if match else frame
    for group, pattern in GROUPS:
        if re.search(pattern, text):
            return group
    return None


def read_profile(path: Path) -> Profile:
    """Group py-spy's raw (collapsed) samples: one line per distinct stack, ``thread;outer;...;inner count``."""
    by_thread: dict[str, list[tuple[list[str], int]]] = {}
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        thread = next((f.partition(": ")[2] for f in frames if f.startswith("thread (")), "")
        frames = [f for f in frames if not f.startswith(("thread (", "process "))]
        by_thread.setdefault(thread, []).append((frames, int(samples)))
    profile = Profile()
    for thread, stacks in by_thread.items():
        if thread == "MainThread":
            groups, functions = profile.main, profile.main_functions
        elif thread.startswith("model"):  # the worker's model thread (stream_app/app.py)
            groups, functions = profile.model, Counter()
        else:
            continue  # a thread of neither kind (uvloop's, the stop deadline): idle
        for frames, count in stacks:
            group = next((g for g in map(group_of, reversed(frames)) if g is not None), "other")
            groups[group] += count
            match = FRAME.match(frames[-1]) if frames else None
            leaf = f"{match['function']} ({short(match['file'])})" if match else (frames[-1] if frames else "?")
            functions[(leaf, group)] += count
    return profile


def short(path: str) -> str:
    """A frame's file relative to site-packages, the standard library or the tree."""
    for marker in ("site-packages/", "lib/python3.11/", "/stream_app/"):
        if marker in path:
            return ("stream_app/" if marker == "/stream_app/" else "") + path.split(marker, 1)[1]
    return path


def share_table(profiles: dict[str, Profile], thread: str) -> list[str]:
    names = list(profiles)
    totals = {n: sum(getattr(profiles[n], thread).values()) or 1 for n in names}
    groups = [g for g, _ in GROUPS] + ["other"]
    lines = [
        "| group | " + " | ".join(f"{n} (% of {totals[n]:,} samples)" for n in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for group in groups:
        if any(getattr(profiles[n], thread)[group] for n in names):
            shares = " | ".join(f"{100 * getattr(profiles[n], thread)[group] / totals[n]:.1f}" for n in names)
            lines.append(f"| {group} | {shares} |")
    return lines


def top_functions(profile: Profile, count: int) -> list[str]:
    total = sum(profile.main.values()) or 1
    lines = ["| function (innermost frame) | group | % of main thread |", "|---|---|---:|"]
    for (function, group), samples in profile.main_functions.most_common(count):
        lines.append(f"| `{function}` | {group} | {100 * samples / total:.1f} |")
    return lines


def render(
    contenders: Sequence[Contender],
    runs: list[dict[str, Measured]],
    profiles: dict[str, Profile],
    events: int,
    load_before: str,
) -> str:
    first = contenders[0].name
    lines = [
        f"{events:,} events of bench.stream's generated stream per run, produced at full speed once the worker's "
        f"consumer group is stable; one worker on fresh single-partition topics. Contenders alternate within each "
        f"run ({len(runs)} runs); figures are medians, ratios are taken within each run first. CPU: the worker "
        f"process's user + system time, all threads, from ready to its last output. Load average (1, 5, 15 min) at "
        f"start: {load_before}; at end: {load_average()} (machine shared with other jobs).",
        "",
        "| contender | tree, worker args | events/s | CPU µs/event | events/s vs "
        + first
        + " | CPU vs "
        + first
        + " |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for c in contenders:
        speed = statistics.median(r[c.name].events_per_second for r in runs)
        cpu = statistics.median(r[c.name].cpu_us_per_event for r in runs)
        speed_ratios = [r[c.name].events_per_second / r[first].events_per_second for r in runs]
        cpu_ratios = [r[c.name].cpu_us_per_event / r[first].cpu_us_per_event for r in runs]
        tree = "this tree" if c.tree == ROOT else "another tree"
        lines.append(
            f"| {c.name} | {tree} {' '.join(c.args)} | {speed:.0f} | {cpu:.0f} | "
            f"{statistics.median(speed_ratios):.2f}x ({', '.join(f'{x:.2f}' for x in speed_ratios)}) | "
            f"{statistics.median(cpu_ratios):.2f}x ({', '.join(f'{x:.2f}' for x in cpu_ratios)}) |"
        )
    if not profiles:
        return "\n".join(lines)
    lines += [
        "",
        "Profile (py-spy, 250 samples/s, from ready to the last output; py-spy leaves out the samples it sees idle, "
        "but counts some waits: they have rows of their own). "
        "A sample counts for the innermost frame of a known part: the standard library's frames count for their "
        "caller.",
        "",
        "Main thread (the event loop), share of its samples in %:",
        "",
        *share_table(profiles, "main"),
        "",
        "Model thread (onnxruntime, runs beside the event loop), share of its samples in %:",
        "",
        *share_table(profiles, "model"),
    ]
    for name, profile in profiles.items():
        lines += ["", f"Top functions of the main thread, {name}:", "", *top_functions(profile, 12)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs; the table shows medians")
    parser.add_argument("--contender", action="append", default=[], help='"NAME=TREE [FAUST OPTIONS]", repeatable')
    parser.add_argument("--no-profile", action="store_true", help="only the interleaved timing runs")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print the results, leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    contenders = [Contender.parse(spec) for spec in args.contender or ["worker=."]]
    was_running = subprocess.run([ROOT / "scripts/kafka", "status"], capture_output=True).returncode == 0
    subprocess.run([ROOT / "scripts/kafka", "start"], check=True)
    if not (ROOT / "artifacts/model/model.json").exists():
        subprocess.run([sys.executable, "-m", "model_export", "--out", "artifacts/model"], cwd=ROOT, check=True)
    load_before = load_average()
    messages = generate(args.events, args.seed)
    runs: list[dict[str, Measured]] = []
    profiles: dict[str, Profile] = {}
    try:
        for run in range(args.runs):
            runs.append({})
            for contender in contenders:
                runs[-1][contender.name] = measured = run_once(contender, messages, None)
                print(
                    f"run {run + 1} {contender.name}: {measured.events_per_second:.0f} events/s, "
                    f"{measured.cpu_us_per_event:.0f} CPU µs/event",
                    flush=True,
                )
        if not args.no_profile:
            with tempfile.TemporaryDirectory() as scratch:
                for contender in contenders:
                    raw = Path(scratch) / f"{contender.name}.txt"
                    run_once(contender, messages, raw)
                    profiles[contender.name] = read_profile(raw)
    finally:
        if not was_running:
            subprocess.run([ROOT / "scripts/kafka", "stop"], check=False)
    body = render(contenders, runs, profiles, len(messages), load_before)
    print(body)
    if not args.no_write and profiles:
        command = " ".join(
            [
                "python -m bench.profile",
                f"--events {args.events}",
                f"--runs {args.runs}",
                *(f"--contender {shlex.quote(spec)}" for spec in args.contender),
            ]
        )
        write_section("profile", "Profile of the per-event path", body, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
