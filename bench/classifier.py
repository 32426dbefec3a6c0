"""Classifier latency: the served ONNX model against the scikit-learn pipeline it was exported from, and where
the ONNX graph spends its time.

``.venv/bin/python -m bench.classifier [--model-dir artifacts/model] [--vs OTHER_MODEL_DIR]``. Measures, on the
held-out texts of the model's own split, single-message p50 / p99 latency and the per-message cost in batches
of 1, 16 and 64, for ``Classifier.predict`` (ONNX, one thread, what the worker calls), for another exported
model (``--vs``, e.g. the one main exports) and for ``Pipeline.predict_proba``. Within each of ``--runs`` runs
the ONNX models take turns call by call (batch by batch), and every figure is the median over the runs. onnxruntime's profiler then gives
each graph's time per operator type. The scikit-learn pipeline is rebuilt here by training with the card's
hyper-parameters; serving never imports it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import write_section
from model_export import train
from model_export.data import load_dataset
from stream_app.classifier import Classifier, event_text

ROOT = Path(__file__).resolve().parents[1]
BATCH_SIZES = (1, 16, 64)
WARMUP_CALLS = 50
PROFILE_RUNS = {64: 100, 1: 2000}
"""onnxruntime's profiler runs: batch size to number of batches."""


Predict = Callable[[list[str]], object]


def single_latencies_us(predicts: Sequence[Predict], texts: Sequence[str], calls: int) -> np.ndarray:
    """Wall time of ``calls`` one-text calls of each of ``predicts``, cycling through ``texts``, in µs, as
    [contender, call]. The contenders take turns call by call, the first rotating, so that the shared host's
    drift (up to 50 % within the hour) falls on all of them alike."""
    for predict in predicts:
        for text in texts[:WARMUP_CALLS]:
            predict([text])
    timings = np.empty((len(predicts), calls))
    for i in range(calls):
        chunk = [texts[i % len(texts)]]
        for turn in range(len(predicts)):
            which = (i + turn) % len(predicts)
            started = time.perf_counter_ns()
            predicts[which](chunk)
            timings[which, i] = time.perf_counter_ns() - started
    return timings / 1e3


def per_message_us(predicts: Sequence[Predict], texts: Sequence[str], batch: int, messages: int) -> np.ndarray:
    """Mean wall time per message of each of ``predicts`` when ``messages`` messages are classified ``batch`` at
    a time, the contenders taking turns batch by batch."""
    batches = [[texts[(start + i) % len(texts)] for i in range(batch)] for start in range(0, messages, batch)]
    for predict in predicts:
        predict(batches[0])
    totals = np.zeros(len(predicts))
    for i, chunk in enumerate(batches):
        for turn in range(len(predicts)):
            which = (i + turn) % len(predicts)
            started = time.perf_counter_ns()
            predicts[which](chunk)
            totals[which] += time.perf_counter_ns() - started
    return totals / 1e3 / (len(batches) * batch)


def measure(predicts: Sequence[Predict], texts: Sequence[str], calls: int) -> list[list[float]]:
    """For each of ``predicts``: single p50, single p99, then the per-message cost at each of BATCH_SIZES, in µs."""
    latencies = single_latencies_us(predicts, texts, calls)
    costs = [per_message_us(predicts, texts, batch, max(calls // 2, 64 * 4)) for batch in BATCH_SIZES]
    return [
        [float(np.percentile(latencies[i], 50)), float(np.percentile(latencies[i], 99)), *(c[i] for c in costs)]
        for i in range(len(predicts))
    ]


def operator_profile(model_dir: Path, texts: Sequence[str], batch: int) -> dict[str, float]:
    """Kernel time per operator type, in µs per message, over PROFILE_RUNS[batch] batches of ``batch`` texts.

    The session is configured as :meth:`Classifier.load` configures it, with onnxruntime's profiler on.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_mem_pattern = False
    with tempfile.TemporaryDirectory() as scratch:
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(scratch, "profile")
        session = ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
        card = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
        feeds = [
            np.asarray([texts[(start + i) % len(texts)] for i in range(batch)], dtype=object).reshape(-1, 1)
            for start in range(0, PROFILE_RUNS[batch] * batch, batch)
        ]
        for feed in feeds:
            session.run([card["outputs"]["probabilities"]], {card["input"]["name"]: feed})
        events = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
    per_op: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"] / (PROFILE_RUNS[batch] * batch)
    return dict(sorted(per_op.items(), key=lambda item: -item[1]))


def graph_nodes(model_dir: Path) -> int:
    """The number of nodes onnxruntime runs (:func:`~model_export.parity.loaded_graph`): at batch 1 each costs a
    fixed few µs."""
    from model_export.parity import loaded_graph

    return len(loaded_graph((model_dir / "model.onnx").read_bytes()).node)


def profile_table(profiles: dict[str, dict[str, float]]) -> list[str]:
    """Markdown rows: each operator type's µs per message and share of kernel time, one column pair per model."""
    ops = list(dict.fromkeys(op for profile in profiles.values() for op in profile))
    header = " | ".join(f"{name} µs/msg | %" for name in profiles)
    rows = [f"| operator | {header} |", "|---|" + "---:|---:|" * len(profiles)]
    for op in ops:
        cells = []
        for profile in profiles.values():
            total = sum(profile.values())
            cells.append(f"{profile[op]:.2f} | {100 * profile[op] / total:.0f}%" if op in profile else "- | -")
        rows.append(f"| {op} | " + " | ".join(cells) + " |")
    totals = " | ".join(f"**{sum(profile.values()):.1f}** | 100%" for profile in profiles.values())
    return [*rows, f"| all kernels | {totals} |"]


def classifier_class(module_path: Path | None) -> Any:
    """:class:`Classifier`, or the class of that name in the module file ``module_path`` (another tree's
    ``stream_app/classifier.py``), so that a change of code and model can be timed against the one before."""
    if module_path is None:
        return Classifier
    spec = importlib.util.spec_from_file_location("bench_vs_classifier", module_path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {module_path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.Classifier


def rebuilt_pipeline(card: dict[str, Any], train_split: train.Split) -> Any:
    """The scikit-learn pipeline of the card's searched hyper-parameters, trained on the same split."""
    searched = {
        k: tuple(v) if isinstance(v, list) else v for k, v in card["hyperparameters"].items() if "__" in k
    }  # JSON turned the n-gram ranges into lists
    pipeline = train.build_pipeline().set_params(**searched)
    return pipeline.fit(np.asarray(train_split.texts, dtype=object), train_split.labels)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark, print the tables and record them in BENCHMARKS.md."""
    parser = argparse.ArgumentParser(prog="python -m bench.classifier", description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=ROOT / "artifacts/model")
    parser.add_argument("--vs", type=Path, default=None, help="another exported model to time in the same runs")
    parser.add_argument(
        "--vs-code",
        type=Path,
        default=None,
        help="a classifier module (e.g. main's stream_app/classifier.py) to serve the --vs model with",
    )
    parser.add_argument("--calls", type=int, default=3000, help="single-message calls for ONNX (sklearn: 1/10)")
    parser.add_argument("--runs", type=int, default=3, help="runs; every figure is the median over them")
    args = parser.parse_args(argv)

    classifier = Classifier.load(args.model_dir)
    card = classifier.card
    examples = load_dataset(ROOT / "data/dataset.csv").examples
    train_split, validation, test = train.split(examples, int(card["hyperparameters"]["seed"]))
    pipeline = rebuilt_pipeline(card, train_split)
    texts = validation.texts + test.texts

    def sklearn_predict(batch: list[str]) -> object:
        return pipeline.predict_proba(np.asarray(batch, dtype=object))

    onnx_name = f"ONNX `Classifier.predict`, model `{classifier.version}`"
    onnx_contenders: dict[str, Predict] = {onnx_name: classifier.predict}
    model_dirs = {onnx_name: args.model_dir}
    if args.vs is not None:
        other = classifier_class(args.vs_code).load(args.vs)
        code = "" if args.vs_code is None else f", code of `{args.vs_code}`"
        other_name = f"ONNX `Classifier.predict`, model `{other.version}`{code} (--vs)"
        onnx_contenders[other_name] = other.predict
        model_dirs[other_name] = args.vs
    sklearn_name = "scikit-learn `predict_proba`"

    figures: dict[str, list[list[float]]] = {name: [] for name in [*onnx_contenders, sklearn_name]}
    for run in range(args.runs):
        # The ONNX models take turns call by call; scikit-learn, 30x slower, runs on its own after them.
        measured = measure(list(onnx_contenders.values()), texts, args.calls)
        measured.append(measure([sklearn_predict], texts, max(200, args.calls // 10))[0])
        for name, values in zip(figures, measured, strict=True):
            figures[name].append(values)
            print(f"run {run + 1}: {name}: " + ", ".join(f"{f:.0f}" for f in values), flush=True)
    rows = []
    medians = {name: np.median(np.asarray(runs), axis=0) for name, runs in figures.items()}
    for name, median in medians.items():
        rows.append(f"| {name} | " + " | ".join(f"{value:.0f}" for value in median) + " |")
    profiles = {
        f"`{Classifier.load(d).version}` ({graph_nodes(d)} nodes), batch {batch}": operator_profile(d, texts, batch)
        for d in model_dirs.values()
        for batch in PROFILE_RUNS
    }

    started = time.perf_counter_ns()
    for example in examples:
        event_text(example.title, example.description)
    text_us = (time.perf_counter_ns() - started) / 1e3 / len(examples)
    long_text = event_text("long", " ".join(texts))[:20_000]
    long_us = float(np.median(single_latencies_us([classifier.predict], [long_text], 20)))

    body = "\n".join(
        [
            f"Model `{classifier.version}`, {len(texts)} held-out texts (validation + test) cycled; "
            f"onnxruntime with one intra-op and one inter-op thread. Times in µs, median of {args.runs} runs; "
            "within a run the ONNX models take turns call by call (batch by batch), scikit-learn runs after them.",
            "",
            "| contender | single p50 | single p99 | per message, batch 1 | batch 16 | batch 64 |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
            "",
            f"ONNX is {medians[sklearn_name][0] / medians[onnx_name][0]:.0f}x faster than scikit-learn per single "
            f"message (p50). `event_text` adds {text_us:.1f} µs per message; one 20,000-character message takes "
            f"{long_us:.0f} µs through ONNX.",
            "",
            "Where the ONNX time goes: onnxruntime's profiler, kernel time per operator type, "
            + ", ".join(f"over {runs} batches of {batch}" for batch, runs in PROFILE_RUNS.items())
            + " (µs per message and share). The profiler's own overhead is included, so the totals exceed the wall "
            "times above; at batch 1 it adds a few µs to every node, which is why the node count matters there.",
            "",
            *profile_table(profiles),
        ]
    )
    print(body)
    command = "python -m bench.classifier"
    if args.model_dir != ROOT / "artifacts/model":
        command += f" --model-dir {args.model_dir}"
    if args.vs is not None:
        command += f" --vs {args.vs}"
    if args.vs_code is not None:
        command += f" --vs-code {args.vs_code}"
    write_section("classifier", "Classifier latency: ONNX against scikit-learn", body, command)


if __name__ == "__main__":
    main()
