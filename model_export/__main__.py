"""``python -m model_export``: validate the data, train, evaluate, export to ONNX behind a parity gate."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model_export import card, evaluate, export, train
from model_export.data import load_dataset
from stream_app.errors import TaggerError


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Print a stage's name and, when it ends, its duration."""
    print(f"[{name}] ...", flush=True)
    started = time.perf_counter()
    yield
    print(f"[{name}] done in {time.perf_counter() - started:.2f} s", flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every stage, in order; returns the card written next to the model."""
    with stage("validate data"):
        dataset = load_dataset(args.data, args.feedback)
        data_sha = hashlib.sha256(args.data.read_bytes()).hexdigest()
        if args.feedback is not None:
            data_sha = hashlib.sha256(data_sha.encode() + args.feedback.read_bytes()).hexdigest()
        print(f"  {len(dataset.examples)} examples; duplicate titles removed at lines {dataset.duplicate_rows}")
    with stage("split"):
        train_split, validation, test = train.split(dataset.examples, args.seed)
        print(f"  train {len(train_split.texts)}, validation {len(validation.texts)}, test {len(test.texts)}")
    with stage("cross-validated search"):
        grid = train.FAST_PARAM_GRID if args.fast else train.PARAM_GRID
        pipeline, params, cv_score = train.search(train_split, args.seed, grid)
        classes = [str(c) for c in pipeline.classes_]
        print(f"  best {params}, cv weighted precision {cv_score:.3f}")
    with stage("review threshold (out of fold)"):
        oof = train.out_of_fold(pipeline, train_split, args.seed)
        threshold = train.choose_threshold(oof, train_split.labels, classes, args.target_precision)
        print(f"  threshold {threshold:.4f} keeps out-of-fold precision >= {args.target_precision}")
    with stage("evaluate"):
        probabilities = {
            name: pipeline.predict_proba(np.asarray(part.texts, dtype=object))
            for name, part in (("validation", validation), ("test", test))
        }
        results: dict[str, Any] = {
            "cv_weighted_precision": cv_score,
            "out_of_fold": evaluate.evaluate(train_split.examples, oof, classes, threshold),
            "validation": evaluate.evaluate(validation.examples, probabilities["validation"], classes, threshold),
            "test": evaluate.evaluate(test.examples, probabilities["test"], classes, threshold),
        }
        for name in ("validation", "test"):
            print(evaluate.render(name, results[name]))
    with stage("export to ONNX and parity gate"):
        model_bytes = export.convert(pipeline)
        parity = export.check_parity(pipeline, model_bytes, export.parity_texts(validation.texts + test.texts))
        print(f"  {parity['texts']} texts, max |p_onnx - p_sklearn| = {parity['max_abs_probability_difference']:.1e}")
    with stage("write model and card"):
        model_card = card.build_card(
            model_bytes=model_bytes,
            data_sha256=data_sha,
            classes=classes,
            threshold=threshold,
            target_precision=args.target_precision,
            params={**params, "grid": grid, "seed": args.seed},
            evaluation=results,
            reference_distribution=card.reference(oof, classes, threshold),
            parity=parity,
            input_name=export.INPUT_NAME,
        )
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "model.onnx").write_bytes(model_bytes)
        (args.out / "model.json").write_text(json.dumps(model_card, indent=2) + "\n", encoding="utf-8")
        print(f"  {args.out / 'model.onnx'} ({len(model_bytes) / 1e6:.1f} MB), version {model_card['version']}")
    return model_card


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m model_export", description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/dataset.csv"), help="labelled CSV")
    parser.add_argument(
        "--feedback",
        type=Path,
        default=None,
        help="JSONL of reviewer labels {id, title, description, tag} added to the data",
    )
    parser.add_argument("--out", type=Path, default=Path("artifacts/model"), help="output folder")
    parser.add_argument(
        "--target-precision", type=float, default=0.97, help="auto-tagged precision the review threshold must keep"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--fast", action="store_true", help="a one-point grid (tests); same pipeline")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; a data, parity or model error exits 2 with its message."""
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        run(args)
    except TaggerError as error:
        print(f"model_export: {error}", file=sys.stderr)
        return 2
    print(f"total {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
