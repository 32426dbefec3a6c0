"""Faust's web server, made to leave request bodies as they were sent: never inflated.

aiohttp inflates a request body sent with ``Content-Encoding: gzip`` (or ``deflate``, ``br``) as its bytes arrive,
on the worker's event loop, before any handler runs, and again while it drains a body the handler did not read:
a 1 MB body that inflates to 1 GB held the event loop for seconds, on every route and without a session, and every
event of the worker waited behind it (aiohttp #1992 and #5957, where upstream calls it expected). No route of the
worker takes a compressed body, so none is inflated: a handler that reads one gets the bytes as sent, which no form
or JSON parses.

Faust makes its ``AppRunner`` in ``Web.__init__`` with no way to pass server options, so it is made again here;
:mod:`stream_app.faust_patches.checks` verifies the names at start-up.
"""

from __future__ import annotations

from typing import Any

from aiohttp.web import AppRunner


def leave_bodies_compressed(web: Any) -> Any:
    """``web``, Faust's aiohttp web driver, serving without inflating request bodies."""
    web._runner = AppRunner(web.web_app, access_log=None, auto_decompress=False)
    return web
