"""The start-up check of the library names the worker's Faust and aiokafka fixes rely on."""

from __future__ import annotations

import pytest

from stream_app.errors import ConfigError
from stream_app.faust_patches import checks
from stream_app.faust_patches.checks import CODECS, HOOKS, Hook, check_library_hooks, missing_codecs, missing_hooks


@pytest.mark.parametrize("hook", HOOKS, ids=lambda hook: f"{hook.owner}.{hook.name}")
def test_every_hooked_name_exists_in_the_installed_libraries(hook: Hook, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "HOOKS", (hook,))
    assert missing_hooks() == []


def test_a_renamed_name_stops_the_start_with_the_name_and_its_user(monkeypatch: pytest.MonkeyPatch) -> None:
    renamed = Hook("aiokafka.consumer.consumer:AIOKafkaConsumer", "_isolation_level_v2", "read_committed", "x")
    monkeypatch.setattr(checks, "HOOKS", (*HOOKS, renamed))
    with pytest.raises(ConfigError, match=r"AIOKafkaConsumer\._isolation_level_v2 \(used by read_committed\)"):
        check_library_hooks()


def test_a_library_of_another_series_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "VERIFIED_SERIES", {"faust-streaming": "0.99."})
    with pytest.raises(ConfigError, match=r"faust-streaming .* verified on 0\.99\.x"):
        check_library_hooks()


def test_the_installed_libraries_pass() -> None:
    check_library_hooks()


def test_every_codec_a_record_batch_may_use_is_read() -> None:
    """Real batches of each codec through aiokafka's own reader, as the consumer reads them: one it could not
    decompress would stop every worker given its partition."""
    from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

    assert missing_codecs() == []
    for number, codec in enumerate(CODECS, 1):  # aiokafka's attribute values: gzip 1, snappy 2, lz4 3, zstd 4
        builder = DefaultRecordBatchBuilder(2, number, 0, -1, -1, -1, 1 << 20)
        builder.append(0, timestamp=0, key=b"k", value=b"compressed " * 50, headers=[])
        batch = DefaultRecordBatch(bytes(builder.build()))
        assert batch.compression_type == number
        assert [record.value for record in batch] == [b"compressed " * 50], codec


def test_a_missing_codec_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    import aiokafka.codec

    monkeypatch.setattr(aiokafka.codec, "has_zstd", lambda: False)
    with pytest.raises(ConfigError, match=r"cannot read records compressed with zstd"):
        check_library_hooks()
