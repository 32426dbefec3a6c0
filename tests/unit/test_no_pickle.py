"""The serving path never unpickles: loading the model, building the worker's app and classifying run under an
audit hook that sees every ``pickle.find_class`` (what any pickle-based loader, joblib's included, calls to
rebuild an object), and pull in no pickle-based model library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.harness import free_port

ROOT = Path(__file__).resolve().parents[2]

SERVING_UNDER_AUDIT = """
import json, pickle, sys
seen = []
sys.addaudithook(lambda event, args: seen.append(list(args)) if event == "pickle.find_class" else None)

class Probe: ...

pickle.loads(pickle.dumps(Probe()))  # the hook works: unpickling an object is seen
assert seen == [["__main__", "Probe"]], seen
seen.clear()

from stream_app.app import create_app
from stream_app.classifier import Classifier, event_text
from stream_app.settings import Settings

settings = Settings.from_env()
classifier = Classifier.load(settings.model_dir)
create_app(settings, classifier)
classifier.predict([event_text("A transformer for text classification", "attention is all you need")])
libraries = ("joblib", "sklearn", "skops", "cloudpickle", "dill")
print(json.dumps({"find_class": seen, "modules": [name for name in libraries if name in sys.modules]}))
"""


def test_loading_and_serving_the_model_never_unpickles(trained_model_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SERVING_UNDER_AUDIT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TAGGER_MODEL_DIR": str(trained_model_dir), "TAGGER_WEB_PORT": str(free_port())},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"find_class": [], "modules": []}
