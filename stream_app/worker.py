"""Start-up: settings from the environment, the checked model, and the Faust app built from both."""

from __future__ import annotations

import logging
import sys

import faust

from stream_app.agents import create_app
from stream_app.classifier import Classifier
from stream_app.errors import TaggerError
from stream_app.lifecycle import current_model_dir
from stream_app.settings import Settings

log = logging.getLogger(__name__)


def build_app(settings: Settings | None = None) -> faust.App:
    """Build the worker's app; a configuration or model error exits with status 2 and one clear line."""
    try:
        settings = settings if settings is not None else Settings.from_env()
        model_dir = current_model_dir(settings.model_dir, settings.candidates_dir)
        classifier = Classifier.load(model_dir, settings.review_threshold)
    except TaggerError as error:
        print(f"content-tagger: cannot start: {error}", file=sys.stderr)
        raise SystemExit(2) from error
    log.info("serving model %s from %s, review threshold %.3f", classifier.version, model_dir, classifier.threshold)
    return create_app(settings, classifier)


def main() -> None:
    """Run the worker: ``python -m stream_app`` (default ``worker -l info``) takes Faust's command line."""
    app = build_app()
    if len(sys.argv) == 1:
        sys.argv += ["worker", "-l", "info"]
    app.main()
