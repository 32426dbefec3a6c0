"""The worker's web port: what its routes are, and that the README and the review page's docs name them all."""

from __future__ import annotations

import re
from pathlib import Path

from stream_app.app import create_app
from stream_app.classifier import Classifier
from stream_app.settings import Settings

ROOT = Path(__file__).resolve().parents[3]


def served_paths(model_dir: Path, tmp_path: Path) -> set[str]:
    """The paths the worker's web server answers a GET on, as it builds them at start (no broker needed)."""
    settings = Settings.from_env(
        {
            "TAGGER_DATA_DIR": str(tmp_path / "worker"),
            "TAGGER_LABELS_PATH": str(tmp_path / "labels.jsonl"),
            "TAGGER_REVIEWERS_FILE": str(tmp_path / "reviewers"),
            "TAGGER_CANDIDATES_DIR": str(tmp_path / "candidates"),
        }
    )
    app = create_app(settings, Classifier.load(model_dir), model_dir=model_dir)
    app.web.init_server()
    return {route.resource.canonical for route in app.web.web_app.router.routes() if route.method == "GET"}


def test_the_readme_names_every_path_the_web_port_answers(trained_model_dir: Path, tmp_path: Path) -> None:
    """Faust's index view stays: ``/`` answers ``{"status": "OK"}``, which scripts/demo takes as a taken port."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (row,) = [line for line in readme.splitlines() if line.startswith("| `TAGGER_WEB_PORT` |")]
    named = set(re.findall(r"`(/[^`]*)`", row))
    paths = served_paths(trained_model_dir, tmp_path)
    assert "/" in paths
    assert [path for path in sorted(paths) if not any(path == n or path.startswith(n + "/") for n in named)] == []


def test_the_review_page_s_docs_say_what_faust_s_index_answers() -> None:
    review = (ROOT / "docs/review.md").read_text(encoding="utf-8")
    assert 'Faust\'s index, `GET /`, answers 200 `{"status": "OK"}`' in review
    assert "Faust's own web views answer 404" not in review
