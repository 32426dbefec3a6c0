"""The worker of ``python -m stream_app``, whose agent never finishes its first batch, for
tests/integration/test_lag.py: it stands for any agent that is stuck (a hung call, a deadlock) while the consumer,
the web server and the timers go on.

``python -m tests.integration.stuck_agent_app worker`` takes the worker's command line and ``TAGGER_*`` settings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from stream_app.topology.agent import BatchTagger
from stream_app.worker import build_app


def main() -> None:
    """Run the worker with an agent that waits for ever on its first batch."""

    async def stuck(self: BatchTagger, events: Sequence[Any]) -> None:
        await asyncio.Event().wait()

    BatchTagger.__call__ = stuck  # type: ignore[method-assign]
    build_app().main()


if __name__ == "__main__":
    main()
