"""The worker's Faust app, for ``faust -A stream_app.app worker -l info``.

Importing this module *is* the worker's start-up: it reads the settings and loads the model once, and a
model that fails its checks stops the start with a non-zero exit before anything is consumed.
"""

from __future__ import annotations

from stream_app.worker import build_app

app = build_app()
