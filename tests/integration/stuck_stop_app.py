"""The worker of ``python -m stream_app``, with one more shutdown step that never finishes, for
tests/integration/test_stop.py: it stands for any stop that hangs (a lost connection, an agent that never ends).

``python -m tests.integration.stuck_stop_app worker`` takes the worker's command line and ``TAGGER_*`` settings.
"""

from __future__ import annotations

import asyncio
from typing import Any

from stream_app.worker import build_app


def main() -> None:
    """Run the worker until it is stopped, which it never finishes doing by itself."""
    app = build_app()

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # Faust's stub has no signal arguments
    async def never_finish(sender: Any, **kwargs: Any) -> None:
        await asyncio.Event().wait()

    app.main()


if __name__ == "__main__":
    main()
