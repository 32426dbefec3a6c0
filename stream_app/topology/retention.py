"""Whether the topics every starting worker reads back whole (the title index, the sign-outs, the review and the
feedback topics) keep their records as long as they are needed, as the broker has them configured: checked once, as
the worker starts.

The worker makes these topics with the right configuration when they are missing, but one made by hand, by a
deployment tool, by a broker that creates topics on first use or by an older worker keeps whatever it was given:
often ``cleanup.policy=delete`` with seven days. The records would then go with no error: titles seen more than
seven days ago, and their copies shown again, after the next restart; signed-out sessions valid again; items
waiting for review gone from every review page, or decided items waiting again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from stream_app.errors import ConfigError

log = logging.getLogger(__name__)

DAY_SECONDS = 86400.0

KEPT_FOR_EVER: Final[Mapping[str, str]] = {"cleanup.policy": "delete", "retention.ms": "-1"}
"""The configuration the worker gives the review and feedback topics: no record is ever deleted. Every starting
worker reads them whole, and an item waits for review until a decision on it, however long that takes. Not
compacted: compaction keeps an item's last record only, so a record written later under its id (an unsigned
decision, say) would replace the one that decided it."""


@dataclass(frozen=True)
class KeptTopic:
    """A topic read back whole at every start, and how long each of its records is needed."""

    name: str
    keep_seconds: float
    """``math.inf`` for a topic none of whose records may ever go."""
    setting: str
    """What decides ``keep_seconds``, for the error."""


def retention_problem(topic: KeptTopic, configs: Mapping[str, str | None]) -> str | None:
    """Why ``topic``, configured with ``configs`` (the broker's ``cleanup.policy`` and ``retention.ms``), would
    delete records before they are no longer needed; None when it would not."""
    given = configs.get("cleanup.policy")
    policy = "delete" if given is None else given  # Kafka's default; an empty list keeps every record
    if "delete" not in {part.strip() for part in policy.split(",")}:
        return None  # compacted only (each key's last record stays), or no cleanup at all
    raw = configs.get("retention.ms") or "-1"
    try:
        retention_ms = int(raw)
    except ValueError:
        return f"{topic.name}: retention.ms={raw!r:.40} is not a number of milliseconds"
    if retention_ms < 0:
        return None
    deletes = f"{topic.name} deletes records after {retention_ms / 1000 / DAY_SECONDS:.4g} days"
    configured = f"(cleanup.policy={policy}, retention.ms={retention_ms})"
    if math.isinf(topic.keep_seconds):
        return (
            f"{deletes} {configured}, but they are needed for ever ({topic.setting}): set retention.ms=-1"
            f" (kafka-configs.sh --bootstrap-server <broker> --alter --entity-type topics --entity-name {topic.name}"
            " --add-config retention.ms=-1)"
        )
    needed_ms = math.ceil(topic.keep_seconds * 1000)
    if retention_ms >= needed_ms:
        return None
    return (
        f"{deletes} {configured}, but they are needed for {topic.keep_seconds / DAY_SECONDS:.4g} days"
        f" ({topic.setting}): set retention.ms={needed_ms} or more, or -1, or cleanup.policy=compact"
    )


async def check_retention(client_options: Mapping[str, Any], topics: Sequence[KeptTopic]) -> None:
    """Raise :class:`ConfigError` naming each of ``topics`` whose configuration deletes records too soon
    (:func:`retention_problem`). A configuration the broker does not give (no permission to describe it, say) is
    logged and not checked: the check must not stop a worker that would otherwise run."""
    by_name = {topic.name: topic for topic in topics}
    admin = AIOKafkaAdminClient(**client_options)
    try:
        await admin.start()
        responses = await admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, name, {"cleanup.policy": None, "retention.ms": None})
                for name in by_name
            ]
        )
    except KafkaError as error:
        log.warning("the retention of %s is not checked: %r", ", ".join(by_name), error)
        return
    finally:
        await admin.close()
    problems = []
    for response in responses:
        for error_code, error_message, _, name, entries in response.resources:
            if name not in by_name:
                continue
            if error_code:
                log.warning("the retention of %s is not checked: error %d %s", name, error_code, error_message)
                continue
            problem = retention_problem(by_name[name], {entry[0]: entry[1] for entry in entries})
            if problem is not None:
                problems.append(problem)
    if problems:
        raise ConfigError("; ".join(problems))
