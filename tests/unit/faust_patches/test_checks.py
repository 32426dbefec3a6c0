"""The start-up check of the library names the worker's Faust and aiokafka fixes rely on."""

from __future__ import annotations

import pytest

from stream_app.errors import ConfigError
from stream_app.faust_patches import checks
from stream_app.faust_patches.checks import HOOKS, Hook, check_library_hooks, missing_hooks


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
