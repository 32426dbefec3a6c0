"""``python -m model_export``: validate the data, train, evaluate, export to ONNX behind a parity gate."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
from threadpoolctl import threadpool_limits

from model_export import card, evaluate, export, parity, promote, registry, train
from model_export.data import (
    Example,
    Feedback,
    apply_feedback,
    load_dataset,
    load_feedback,
)
from stream_app.classifier import Classifier, event_text
from stream_app.errors import TaggerError

SKIPS_SHOWN: Final = 10
"""Skipped feedback lines named in the output; the rest are counted."""


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
        dataset = load_dataset(args.data)
        loaded = load_feedback(args.feedback) if args.feedback is not None else Feedback([], [])
        feedback = loaded.examples
        data_sha = hashlib.sha256(args.data.read_bytes()).hexdigest()
        if args.feedback is not None:
            data_sha = hashlib.sha256(data_sha.encode() + args.feedback.read_bytes()).hexdigest()
        print(f"  {len(dataset.examples)} examples; copies of earlier rows removed at lines {dataset.duplicate_rows}")
        if loaded.skipped:
            shown = "; ".join(loaded.skipped[:SKIPS_SHOWN]) + ("; ..." if len(loaded.skipped) > SKIPS_SHOWN else "")
            print(f"  {len(loaded.skipped)} unusable feedback lines skipped: {shown}")
    with stage("split"):
        # The split is the dataset's alone, so every candidate is compared on the same validation and test rows.
        train_split, validation, test = train.split(dataset.examples, args.seed)
        key = b""
        if feedback:
            key = promote.holdout_key(args.holdout_key or args.feedback.parent / promote.HOLDOUT_KEY_FILE)
        decisions = promote.split_feedback(feedback, validation.examples + test.examples, key)
        learned, holdout = decisions.learned, decisions.holdout
        train_split = train.to_split(apply_feedback(train_split.examples, learned))
        print(f"  train {len(train_split.texts)}, validation {len(validation.texts)}, test {len(test.texts)}")
        if feedback:
            print(
                f"  feedback: {len(learned)} trained on, {len(holdout)} held out to judge, "
                f"{decisions.ignored} ignored (they name or copy validation, test or held-out rows)"
            )
    with stage("cross-validated search"):
        grid = train.FAST_PARAM_GRID if args.fast else train.PARAM_GRID
        pipeline, params, cv_score, candidates = train.search(train_split, args.seed, grid)
        classes = [str(c) for c in pipeline.classes_]
        best = max(candidates, key=lambda c: c["cv_weighted_precision"])
        print(f"  best {best['params']}, cv weighted precision {best['cv_weighted_precision']:.3f}")
        print(f"  chosen (fewest lookups within one standard error) {params}, {cv_score:.3f}")
    with stage("review threshold (out of fold)"):
        oof = train.out_of_fold(pipeline, train_split, args.seed)
        threshold = train.choose_threshold(oof, train_split.labels, classes, args.target_precision)
        print(f"  threshold {threshold:.4f} keeps out-of-fold precision >= {args.target_precision}")
    with stage("evaluate"):
        held_out = {"validation": validation, "test": test, "test_title_only": train.title_only(test)}
        results: dict[str, Any] = {"cv_weighted_precision": cv_score}
        results["out_of_fold"] = evaluate.evaluate(train_split.examples, oof, classes, threshold)
        for name, part in held_out.items():
            probabilities = pipeline.predict_proba(np.asarray(part.texts, dtype=object))
            results[name] = evaluate.evaluate(part.examples, probabilities, classes, threshold)
            print(evaluate.render(name, results[name]))
    with stage("export to ONNX and parity gate"):
        model_bytes = export.convert(pipeline)
        report = parity.check_parity(
            pipeline, model_bytes, parity.parity_texts(pipeline, validation.texts + test.texts)
        )
        print(f"  {report['texts']} texts, max |p_onnx - p_sklearn| = {report['max_abs_probability_difference']:.1e}")
    if args.live is not None:
        with stage("compare with the live model"):
            model_card_promotion = compare_with_live(args.live, pipeline, classes, threshold, test, holdout)
            verdict = "not worse: may be promoted" if model_card_promotion["passed"] else "worse: will be refused"
            print(f"  against live {model_card_promotion['live_version']}: {verdict} {model_card_promotion['reasons']}")
    with stage("write model and card"):
        model_card = card.build_card(
            model_bytes=model_bytes,
            data_sha256=data_sha,
            classes=classes,
            threshold=threshold,
            target_precision=args.target_precision,
            params={**params, "grid": grid, "seed": args.seed, "candidates": candidates},
            evaluation=results,
            reference_distribution=card.reference(oof, classes, threshold),
            parity=report,
            io=export.describe_io(model_bytes),
        )
        if args.live is not None:
            model_card["promotion"] = model_card_promotion
            # A candidate appears in the watched folder whole: written beside it, then renamed into place.
            staging = args.out.parent / f".{args.out.name}.partial"
            card.write_model(staging, model_bytes, model_card)
            staging.rename(args.out)
        else:
            card.write_model(args.out, model_bytes, model_card)
        print(f"  {args.out / 'model.onnx'} ({len(model_bytes) / 1e6:.1f} MB), version {model_card['version']}")
    return model_card


def compare_with_live(
    live_dir: Path,
    pipeline: Any,
    classes: list[str],
    threshold: float,
    test: train.Split,
    holdout: list[Example],
) -> dict[str, Any]:
    """Score the live ONNX model and the candidate on the same test split and feedback holdout."""
    live = Classifier.load(live_dir)
    holdout_texts = [event_text(e.title, e.description) for e in holdout]

    def live_probabilities(texts: list[str]) -> np.ndarray:
        predictions = live.predict(texts) if texts else []
        return np.asarray([[p.scores[c] for c in classes] for p in predictions]).reshape(len(texts), len(classes))

    def candidate_probabilities(texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(classes)))
        return np.asarray(pipeline.predict_proba(np.asarray(texts, dtype=object)))

    live_scores = promote.score(
        test.examples, live_probabilities(test.texts), holdout, live_probabilities(holdout_texts),
        classes, live.threshold,
    )  # fmt: skip
    candidate_scores = promote.score(
        test.examples, candidate_probabilities(test.texts), holdout, candidate_probabilities(holdout_texts),
        classes, threshold,
    )  # fmt: skip
    return promote.promotion_record(live.version, live_scores, candidate_scores)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m model_export", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("data/dataset.csv"), help="labelled CSV")
    parser.add_argument(
        "--feedback",
        type=Path,
        default=None,
        help="JSONL labelled store of reviewer decisions {id, title, description, tag}: the latest decision per "
        "id (by decided_at, else the later line) wins; unusable lines are skipped and named; it replaces the "
        "training row with that id or title; one in five (by a keyed hash of the id) is held out to judge "
        "candidates; decisions on validation or test rows are ignored so every candidate meets the same split",
    )
    parser.add_argument(
        "--holdout-key",
        type=Path,
        default=None,
        help="file of the secret key that picks the held-out decisions (default: holdout.key beside --feedback; "
        "made with random bytes when missing)",
    )
    parser.add_argument("--out", type=Path, default=Path("artifacts/model"), help="output folder")
    parser.add_argument(
        "--live",
        type=Path,
        default=None,
        help="folder of the model now serving: compare the new model with it and write it as a candidate "
        "(the folder --out must not exist yet; it appears whole)",
    )
    parser.add_argument(
        "--target-precision", type=float, default=0.97, help="auto-tagged precision the review threshold must keep"
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the split and the cross-validation folds")
    parser.add_argument("--fast", action="store_true", help="search a one-point grid (for tests); same pipeline")
    parser.add_argument(
        "--registry",
        default=os.environ.get("MLFLOW_TRACKING_URI", ""),
        help="MLflow registry URL to log the run to and register the model in (default: $MLFLOW_TRACKING_URI)",
    )
    parser.add_argument("--reason", default="manual", help="why this run was started, recorded on the run")
    parser.add_argument("--model-name", default="content-tagger", help="registered model name")
    args = parser.parse_args(argv)
    if not 0.0 < args.target_precision < 1.0:
        parser.error("--target-precision must be between 0 and 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; a data, parity or model error exits 2 with its message."""
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        # One BLAS thread: a parallel sum adds in another order, so the card's threshold (chosen on out-of-fold
        # probabilities) would differ in its last digits from one machine's core count to another's.
        with threadpool_limits(limits=1):
            model_card = run(args)
        if args.registry:
            with stage("log to the registry"):
                version = registry.log_training(args.registry, args.out, model_card, args.reason, args.model_name)
                print(f"  registered version {version.number}: {version.tags.get('decision')}")
    except TaggerError as error:
        print(f"model_export: {error}", file=sys.stderr)
        return 2
    print(f"total {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
