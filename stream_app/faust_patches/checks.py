"""The start-up check of every library name the worker's fixes rely on.

The fixes in this package subclass Faust's and aiokafka's consumers and override or read names those libraries
keep private. An upstream rename would make an override silently dead (a method never called) or an assignment
silently ignored (``consumer._isolation_level``, which would drop ``read_committed``). So the
worker refuses to start when a name is missing or a library is not of the series the fixes were verified on.

Each hooked name is listed with the fix that uses it and the upstream issue it works around.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from importlib import metadata
from typing import Final

from aiohttp.web_protocol import RequestHandler

from stream_app.errors import ConfigError


@dataclass(frozen=True)
class Hook:
    """A private library name a fix relies on."""

    owner: str
    """``module:Class`` (or ``module`` for a module-level name)."""
    name: str
    used_by: str
    upstream: str


VERIFIED_SERIES: Final = {"faust-streaming": "0.15.", "aiokafka": "0.14."}
"""The minor series of each library the fixes were verified on (pyproject.toml pins the same)."""

FAUST_THREAD = "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread"
FAUST_CONSUMER = "faust.transport.drivers.aiokafka:Consumer"
FAUST_BASE_CONSUMER = "faust.transport.consumer:Consumer"
FAUST_APP = "faust.app.base:App"
AIOKAFKA_CONSUMER = "aiokafka.consumer.consumer:AIOKafkaConsumer"
AIOKAFKA_FETCHER = "aiokafka.consumer.fetcher:Fetcher"
SENDER = "aiokafka.producer.sender:Sender"
SEND_PRODUCE = "aiokafka.producer.sender:SendProduceReqHandler"
SEEK_LOSS = "faust-streaming records dropped around a rebalance's seek (consumer.py)"
TAKE_ACK = "faust-streaming #189, #315: take_events acks a failed batch"
HAND_OVER = "robinhood/faust #563: four tasks per record in the fetch loop (eager.py)"
INLET = "robinhood/faust #563: Faust's per-record path costs most of a hop (inlet.py)"
BATCH_SEND = "faust-streaming #108: Faust sends one record at a time (producer.py)"
PARTITION_COUNT = "faust-streaming's topic_partitions answers on the group's leader only (consumer.py)"
METADATA = "aiokafka's partitions_for_topic knows subscribed topics only (metadata.py)"
PRODUCER_STOP = "aiokafka #1101: a producer's stop waits for the broker with no time limit (closing.py)"
FETCH_WAIT = "faust-streaming hard-codes the worker consumer's fetch_max_wait_ms (fetch_wait.py)"
ANSWERED_RETRY = "aiokafka #1172: a transaction's first writes are refused while its last one's markers land"
REVOKED_ACKS = "faust-streaming #502: a revoked partition's acks are forgotten before they are committed"
LIVELOCK_CHECK = "robinhood/faust #658: Faust reads a partition's position while aiokafka resets it (consumer.py)"
HEADER_KEYS = "aiokafka decodes header keys as strict UTF-8 in the fetch; not reported upstream (header_keys.py)"
INFLATED_BODIES = "aiohttp #1992, #5957: request bodies inflated on the event loop before any handler (web.py)"
PY_BATCH = "aiokafka.record.default_records:_DefaultRecordBatchPy"
IN_LOOP = "faust-streaming reads the input on a thread of its own; not reported upstream (in_loop.py)"
SERVICE_THREAD = "mode.threads:ServiceThread"
HOOKS: Final = (
    Hook(FAUST_THREAD, "_ensure_consumer", "RewindingConsumerThread", SEEK_LOSS),
    Hook(FAUST_THREAD, "_ensure_consumer", "TaggerConsumer.partition_count", PARTITION_COUNT),
    Hook(FAUST_THREAD, "verify_event_path", "RewindingConsumerThread.verify_event_path", LIVELOCK_CHECK),
    Hook(FAUST_THREAD, "_fetch_records", "RewindingConsumerThread.fetch", SEEK_LOSS),
    Hook(FAUST_THREAD, "_create_consumer", "RewindingConsumerThread._create_consumer", "read_committed input"),
    Hook(FAUST_THREAD, "seek_to_committed", "RewindingConsumerThread.seek_to_committed", SEEK_LOSS),
    Hook(FAUST_CONSUMER, "_new_consumer_thread", "TaggerConsumer, TransactedConsumer", SEEK_LOSS),
    Hook(FAUST_CONSUMER, "_getmany", "TaggerConsumer._getmany", SEEK_LOSS),
    Hook(FAUST_CONSUMER, "_seek", "TaggerConsumer._seek", SEEK_LOSS),
    Hook(FAUST_CONSUMER, "_read_offset", "TaggerConsumer (ReadOffsets)", SEEK_LOSS),
    Hook(FAUST_CONSUMER, "_commit", "TransactedConsumer._commit", "offsets left to the transactions"),
    Hook(FAUST_CONSUMER, "perform_seek", "TaggerConsumer.perform_seek", SEEK_LOSS),
    Hook(FAUST_CONSUMER, "resume_flow", "TaggerConsumer.resume_flow", SEEK_LOSS),
    Hook(FAUST_CONSUMER, "ack", "TaggerConsumer.ack (hold_acks)", TAKE_ACK),
    Hook(FAUST_BASE_CONSUMER, "callback", "TaggerConsumer._hand_over", INLET),
    Hook(FAUST_BASE_CONSUMER, "on_partitions_revoked", "TaggerConsumer.on_partitions_revoked", REVOKED_ACKS),
    Hook(FAUST_BASE_CONSUMER, "maybe_wait_for_commit_to_finish", "TaggerConsumer.on_partitions_revoked", REVOKED_ACKS),
    Hook(FAUST_BASE_CONSUMER, "wait_empty", "TaggerConsumer.on_partitions_revoked", REVOKED_ACKS),
    Hook(FAUST_BASE_CONSUMER, "stop_flow", "TaggerConsumer.on_partitions_revoked", REVOKED_ACKS),
    Hook(FAUST_BASE_CONSUMER, "unacked", "inlet.EventInlet.take", INLET),
    Hook(FAUST_APP, "consumer_generation_id", "inlet.EventInlet.take", INLET),
    Hook(FAUST_APP, "flow_control", "inlet.EventInlet", INLET),
    Hook("faust.types.settings.settings:Settings", "Event", "inlet.EventInlet", INLET),
    Hook("faust.types.tuples:Message", "generation_id", "inlet.EventInlet.take", INLET),
    Hook("mode.utils.queues:FlowControlEvent", "manage_queue", "inlet.EventInlet", INLET),
    Hook(FAUST_BASE_CONSUMER, "_drain_messages", "eager.EagerHandOver.wait_first", HAND_OVER),
    Hook("mode.services:Service", "_stopped", "eager.EagerHandOver.wait_first", HAND_OVER),
    Hook("mode.services:Service", "_crashed", "eager.EagerHandOver.wait_first", HAND_OVER),
    Hook("faust.transport.consumer:ThreadDelegateConsumer", "_thread", "TaggerConsumer's consumer thread", SEEK_LOSS),
    Hook("mode.services:ServiceBase", "_repr_name", "worker.TaggerWorker", "deployments wait for '[^Worker]: Ready'"),
    Hook("faust.transport.drivers.aiokafka:Producer", "_ensure_producer", "producer.aiokafka_producer", BATCH_SEND),
    Hook(FAUST_APP, "_new_consumer", "TaggerApp._new_consumer", SEEK_LOSS),
    Hook(FAUST_APP, "_new_web", "TaggerApp._new_web", INFLATED_BODIES),
    Hook("faust.web.drivers.aiohttp:Web", "_runner", "web.leave_bodies_compressed", INFLATED_BODIES),
    Hook("faust.web.drivers.aiohttp:Web", "web_app", "web.leave_bodies_compressed", INFLATED_BODIES),
    Hook(FAUST_APP, "_on_partitions_assigned", "TaggerApp._new_consumer", SEEK_LOSS),
    Hook(FAUST_APP, "_on_partitions_revoked", "TaggerApp._new_consumer", SEEK_LOSS),
    Hook(AIOKAFKA_CONSUMER, "_fetcher", "SeekClock.watch", SEEK_LOSS),
    Hook(AIOKAFKA_CONSUMER, "_max_poll_records", "RewindingConsumerThread.fetch", SEEK_LOSS),
    Hook(AIOKAFKA_CONSUMER, "_isolation_level", "RewindingConsumerThread._create_consumer", "read_committed input"),
    Hook(AIOKAFKA_CONSUMER, "_client", "metadata.topic_partitions", METADATA),
    Hook("aiokafka.client:AIOKafkaClient", "force_metadata_update", "metadata.topic_partitions", METADATA),
    Hook("aiokafka.client:AIOKafkaClient", "cluster", "metadata.topic_partitions", METADATA),
    Hook(AIOKAFKA_FETCHER, "seek_to", "SeekClock.watch", SEEK_LOSS),
    Hook(AIOKAFKA_FETCHER, "_fetch_max_wait_ms", "fetch_wait.bound_fetch_wait", FETCH_WAIT),
    Hook(AIOKAFKA_FETCHER, "request_offset_reset", "SeekClock.watch", SEEK_LOSS),
    Hook("aiokafka.producer.producer:AIOKafkaProducer", "_sender", "closing.close_at_once", PRODUCER_STOP),
    Hook(SENDER, "sender_task", "closing.close_at_once", PRODUCER_STOP),
    *(
        Hook(SENDER, name, "answered_retries.quick_answered_retries", ANSWERED_RETRY)
        for name in (
            "_send_produce_req",
            "_do_txn_offset_commit",
            "_in_flight",
            "_muted_partitions",
            "_find_coordinator",
            "_txn_manager",
        )
    ),
    *(
        Hook(SEND_PRODUCE, name, "answered_retries.AnsweredProduceHandler", ANSWERED_RETRY)
        for name in ("handle_response", "_to_reenqueue", "_default_backoff")
    ),
    Hook("aiokafka.producer.sender:TxnOffsetCommitHandler", "handle_response", "answered_retries", ANSWERED_RETRY),
    Hook("aiokafka.consumer.fetcher", "MemoryRecords", "header_keys.install", HEADER_KEYS),
    Hook("aiokafka.record.default_records", "_DefaultRecordBatchPy", "header_keys.LenientRecordBatch", HEADER_KEYS),
    *(Hook(PY_BATCH, name, "header_keys.LenientRecordBatch", HEADER_KEYS) for name in ("_buffer", "_maybe_uncompress")),
    Hook(PY_BATCH, "_read_msg", "header_keys.LenientRecordBatch (reads header keys from _buffer)", HEADER_KEYS),
    *(
        Hook(SERVICE_THREAD, name, "in_loop.InLoopServiceThread", IN_LOOP)
        for name in ("_serve", "_thread_started", "_thread_running", "_gather_remaining_tasks", "parent_loop")
    ),
    Hook("mode.threads:QueueServiceThread", "call_thread", "in_loop.InLoopServiceThread", IN_LOOP),
    Hook("mode.threads:QueueServiceThread", "cast_thread", "in_loop.InLoopServiceThread", IN_LOOP),
)


def missing_hooks() -> list[Hook]:
    """The hooked names the installed libraries do not have (attributes set in ``__init__`` are looked for in
    its source)."""
    missing = []
    for hook in HOOKS:
        module_name, _, class_name = hook.owner.partition(":")
        owner: object = importlib.import_module(module_name)
        if class_name:
            owner = getattr(owner, class_name)
        if not (hasattr(owner, hook.name) or _set_in_init(owner, hook.name)):
            missing.append(hook)
    return missing


def _set_in_init(owner: object, name: str) -> bool:
    """Whether an ``__init__`` of ``owner``'s classes assigns or reads ``name`` (instance attributes)."""
    for cls in getattr(owner, "__mro__", ()):
        code = getattr(vars(cls).get("__init__"), "__code__", None)
        if code is not None and name in code.co_names:
            return True
    return False


CODECS: Final = ("gzip", "snappy", "lz4", "zstd")
"""Every compression a Kafka record batch may use: a batch the consumer cannot decompress raises out of the fetch,
and every worker given the partition would stop on it, again after each restart."""


def missing_codecs() -> list[str]:
    """The codecs of :data:`CODECS` aiokafka cannot decompress here."""
    import aiokafka.codec

    return [codec for codec in CODECS if not getattr(aiokafka.codec, f"has_{codec}")()]


def check_library_hooks() -> None:
    """Raise :class:`ConfigError` naming what is off, when a library is of another series than the fixes were
    verified on, lacks a name a fix relies on, or cannot decompress a codec Kafka offers."""
    codecs = missing_codecs()
    if codecs:
        raise ConfigError(
            f"aiokafka cannot read records compressed with {', '.join(codecs)}: install aiokafka[lz4,snappy,zstd]"
        )
    for package, series in VERIFIED_SERIES.items():
        version = metadata.version(package)
        if not version.startswith(series):
            raise ConfigError(f"{package} {version} is installed; the worker's fixes are verified on {series}x")
    if "auto_decompress" not in inspect.signature(RequestHandler.__init__).parameters:
        raise ConfigError(
            f"aiohttp {metadata.version('aiohttp')} has no auto_decompress server option (used by web.py)"
        )
    missing = missing_hooks()
    if missing:
        names = ", ".join(f"{hook.owner}.{hook.name} (used by {hook.used_by})" for hook in missing)
        raise ConfigError(f"library names the worker's fixes rely on are missing: {names}")
