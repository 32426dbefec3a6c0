"""Classifier latency: the served ONNX model against the scikit-learn pipeline it was exported from.

``.venv/bin/python -m bench.classifier [--model-dir artifacts/model]``. Measures, on the held-out texts of the
model's own split, single-message p50 / p99 latency and the per-message cost in batches of 1, 16 and 64, for
``Classifier.predict`` (ONNX, one thread, what the worker calls) and for ``Pipeline.predict_proba``. The
scikit-learn pipeline is rebuilt here by training with the card's hyper-parameters; serving never imports it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bench.report import write_section
from model_export import train
from model_export.data import load_dataset
from stream_app.classifier import Classifier, event_text

ROOT = Path(__file__).resolve().parents[1]
BATCH_SIZES = (1, 16, 64)
WARMUP_CALLS = 50


def single_latencies_us(predict: Callable[[list[str]], object], texts: Sequence[str], calls: int) -> np.ndarray:
    """Wall time of ``calls`` one-text calls, cycling through ``texts``, in microseconds."""
    for text in texts[:WARMUP_CALLS]:
        predict([text])
    timings = np.empty(calls)
    for i in range(calls):
        text = texts[i % len(texts)]
        started = time.perf_counter_ns()
        predict([text])
        timings[i] = time.perf_counter_ns() - started
    return timings / 1e3


def per_message_us(predict: Callable[[list[str]], object], texts: Sequence[str], batch: int, messages: int) -> float:
    """Mean wall time per message when ``messages`` messages are classified ``batch`` at a time."""
    batches = [[texts[(start + i) % len(texts)] for i in range(batch)] for start in range(0, messages, batch)]
    predict(batches[0])
    started = time.perf_counter_ns()
    for chunk in batches:
        predict(chunk)
    return (time.perf_counter_ns() - started) / 1e3 / (len(batches) * batch)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark, print the table and record it in BENCHMARKS.md."""
    parser = argparse.ArgumentParser(prog="python -m bench.classifier", description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=ROOT / "artifacts/model")
    parser.add_argument("--calls", type=int, default=5000, help="single-message calls for ONNX (sklearn: 1/10)")
    args = parser.parse_args(argv)

    classifier = Classifier.load(args.model_dir)
    card = json.loads((args.model_dir / "model.json").read_text(encoding="utf-8"))
    searched = {k: v for k, v in card["hyperparameters"].items() if "__" in k}
    examples = load_dataset(ROOT / "data/dataset.csv").examples
    train_split, validation, test = train.split(examples, int(card["hyperparameters"]["seed"]))
    pipeline = train.build_pipeline().set_params(**searched)
    pipeline.fit(np.asarray(train_split.texts, dtype=object), train_split.labels)
    texts = validation.texts + test.texts

    def sklearn_predict(batch: list[str]) -> object:
        return pipeline.predict_proba(np.asarray(batch, dtype=object))

    contenders: dict[str, tuple[Callable[[list[str]], object], int]] = {
        "ONNX `Classifier.predict`": (classifier.predict, args.calls),
        "scikit-learn `predict_proba`": (sklearn_predict, max(200, args.calls // 10)),
    }
    rows = []
    single_p50 = {}
    for name, (predict, calls) in contenders.items():
        latencies = single_latencies_us(predict, texts, calls)
        costs = [per_message_us(predict, texts, batch, max(calls // 2, 64 * 4)) for batch in BATCH_SIZES]
        single_p50[name] = float(np.percentile(latencies, 50))
        rows.append(
            f"| {name} | {np.percentile(latencies, 50):.0f} | {np.percentile(latencies, 99):.0f} | "
            + " | ".join(f"{cost:.0f}" for cost in costs)
            + " |"
        )
        print(rows[-1], flush=True)
    onnx_name, sklearn_name = contenders
    started = time.perf_counter_ns()
    for example in examples:
        event_text(example.title, example.description)
    text_us = (time.perf_counter_ns() - started) / 1e3 / len(examples)
    long_text = event_text("long", " ".join(texts))[:20_000]
    long_us = float(np.median(single_latencies_us(classifier.predict, [long_text], 20)))

    body = "\n".join(
        [
            f"Model `{classifier.version}`, {len(texts)} held-out texts (validation + test) cycled; "
            "onnxruntime with one intra-op and one inter-op thread. Times in µs.",
            "",
            "| contender | single p50 | single p99 | per message, batch 1 | batch 16 | batch 64 |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
            "",
            f"ONNX is {single_p50[sklearn_name] / single_p50[onnx_name]:.0f}x faster than scikit-learn per single "
            f"message (p50). `event_text` adds {text_us:.1f} µs per message; one 20,000-character message takes "
            f"{long_us:.0f} µs through ONNX.",
        ]
    )
    print(body)
    write_section("classifier", "Classifier latency: ONNX against scikit-learn", body)


if __name__ == "__main__":
    main()
