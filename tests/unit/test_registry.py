"""The fleet's registry without a server: the canary split, routing by version, the fleet's verdict, and a
worker following the aliases of a stand-in registry that goes away and comes back."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from stream_app.classifier import Classifier
from stream_app.dedupe import DedupeVerdict
from stream_app.errors import ConfigError
from stream_app.lifecycle.fleet import FleetModel, VersionCounts, canary_verdict, fleet_counts, worker_counts
from stream_app.lifecycle.registry import CANARY, CHAMPION, ModelVersion, RegistryClient, RegistryError
from stream_app.pipeline import Admitted, canary_share
from stream_app.settings import Settings
from tests.unit.test_pipeline import admit, make_pipeline


def unique(item: Admitted) -> DedupeVerdict:
    return DedupeVerdict(item.dedupe_key, None, None, 0.0)


def with_threshold(source: Path, target: Path, threshold: float) -> Path:
    """A copy of a model folder whose card sets another threshold (same bytes, so a model told apart by it)."""
    target.mkdir()
    (target / "model.onnx").write_bytes((source / "model.onnx").read_bytes())
    card = json.loads((source / "model.json").read_text())
    card["threshold"] = threshold
    (target / "model.json").write_text(json.dumps(card))
    return target


def test_the_canary_share_is_a_stable_uniform_hash_of_the_event_id() -> None:
    shares = [canary_share(f"event-{n}") for n in range(10_000)]
    assert shares == [canary_share(f"event-{n}") for n in range(10_000)]  # a replay meets the same model
    assert all(0.0 <= s < 1.0 for s in shares)
    assert 0.18 < sum(s < 0.2 for s in shares) / len(shares) < 0.22


def test_a_canary_serves_its_share_of_events_and_its_records_name_it(trained_model_dir: Path, tmp_path: Path) -> None:
    pipeline, registry = make_pipeline(trained_model_dir)
    canary = Classifier.load(with_threshold(trained_model_dir, tmp_path / "canary", 0.99999))
    canary._version = "canary000000"  # the same bytes: tell the two apart in the records
    pipeline.set_canary(canary, 0.5)
    batch = [admit(pipeline, {"id": f"e{n}", "title": f"Graph neural networks {n}"}, n) for n in range(150)]
    outputs = pipeline.route_batch([b for b in batch if isinstance(b, Admitted)], unique)
    by_version = {o.record["id"]: o.record["model_version"] for o in outputs}
    for n in range(150):
        expected = canary.version if canary_share(f"e{n}") < 0.5 else pipeline.classifier.version
        assert by_version[f"e{n}"] == expected
    canary_outputs = [o for o in outputs if o.record["model_version"] == canary.version]
    assert 50 < len(canary_outputs) < 100 and all(o.kind == "review" for o in canary_outputs)
    labels = {"version": canary.version, "route": "review"}
    assert registry.get_sample_value("content_tagger_model_served_total", labels) == len(canary_outputs)
    assert pipeline.drift.snapshot().events == 150 - len(canary_outputs)  # the drift reference is the champion's
    pipeline.set_canary(None)
    item = admit(pipeline, {"id": "e0", "title": "Graph neural networks x"}, 999)
    assert isinstance(item, Admitted)
    outputs = pipeline.route_batch([item], unique)
    assert outputs[0].record["model_version"] == pipeline.classifier.version


def test_the_canary_is_promoted_only_when_it_sends_no_more_to_review_and_is_as_precise() -> None:
    champion = VersionCounts(tagged=800, review=200, judged=100, correct=95)
    assert canary_verdict(champion, VersionCounts(tagged=40, review=10), 100, 0) is None  # too few events
    assert canary_verdict(champion, VersionCounts(tagged=400, review=100), 100, 10) is None  # nobody judged yet
    assert canary_verdict(champion, VersionCounts(tagged=400, review=100), 100, 0) == (True, [])
    # 0.3 of 500 is past 0.2 + 0.05 + the noise of 500 events; of 100 events, it is within the noise.
    assert canary_verdict(champion, VersionCounts(tagged=70, review=30), 100, 0) == (True, [])
    passed, reasons = canary_verdict(champion, VersionCounts(tagged=350, review=150), 100, 0) or (True, [])
    assert not passed and reasons[0].startswith("review share 0.300 > 0.286")
    passed, reasons = canary_verdict(champion, VersionCounts(400, 100, judged=100, correct=80), 100, 10) or (True, [])
    assert not passed and reasons[0].startswith("online precision 0.800 <")
    assert canary_verdict(champion, VersionCounts(400, 100, judged=20, correct=18), 100, 10) == (True, [])


def test_the_fleets_counts_are_the_sum_of_every_workers_run(trained_model_dir: Path) -> None:
    pipeline, _ = make_pipeline(trained_model_dir)
    version = pipeline.classifier.version
    batch = [admit(pipeline, {"id": n, "title": f"YOLO detection {n}"}, n) for n in range(3)]
    pipeline.route_batch([item for item in batch if isinstance(item, Admitted)], unique)
    pipeline.metrics.judged("accepted", version, "review", "computer-vision", True)
    mine = worker_counts(pipeline.metrics)[version]
    assert (mine.served, mine.judged, mine.correct) == (3, 1, 1)
    runs = [{"data": {"metrics": [{"key": f"{name}.{version}", "value": getattr(mine, name)}
                                  for name in ("tagged", "review", "judged", "correct")]}}] * 2  # fmt: skip
    fleet = fleet_counts([*runs, {"data": {"metrics": [{"key": "junk", "value": 1}]}}])
    assert (fleet[version].served, fleet[version].judged) == (6, 2)


def test_the_client_fetches_only_artifacts_the_registry_serves() -> None:
    client = RegistryClient("http://127.0.0.1:9")
    for source in ("file:///etc", "s3://bucket/model", "mlflow-artifacts:/1/../../etc"):
        with pytest.raises(RegistryError):
            client.download(source, "model.onnx")
    with pytest.raises(RegistryError):
        RegistryClient("file:///tmp/registry")


class StandIn:
    """A registry holding aliases and version folders, which can be made not to answer."""

    def __init__(self) -> None:
        self.up = True
        self.aliases: dict[str, ModelVersion] = {}
        self.folders: dict[str, Path] = {}

    def alias(self, name: str, alias: str) -> ModelVersion | None:
        if not self.up:
            raise RegistryError("connection refused")
        return self.aliases.get(alias)

    def download(self, source: str, relative: str) -> bytes:
        return (self.folders[source] / relative).read_bytes()

    def experiment_id(self, name: str) -> str:
        raise RegistryError("HTTP 503")


def test_a_worker_serves_its_folder_while_the_registry_is_down_and_follows_it_when_it_answers(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    pipeline, registry = make_pipeline(trained_model_dir)
    folder_model = pipeline.classifier
    stand_in = StandIn()
    fleet = FleetModel(stand_in, "m", tmp_path / "cache", pipeline.metrics, canary_fraction=0.25)  # type: ignore[arg-type]
    stand_in.up = False
    asyncio.run(fleet.poll(pipeline))
    assert pipeline.classifier is folder_model
    assert registry.get_sample_value("content_tagger_registry_reachable") == 0

    stand_in.folders["s1"] = with_threshold(trained_model_dir, tmp_path / "v1", 0.5)
    stand_in.aliases[CHAMPION] = ModelVersion("1", "s1", "run")
    stand_in.up = True
    asyncio.run(fleet.poll(pipeline))
    assert pipeline.classifier.threshold == 0.5 and registry.get_sample_value("content_tagger_registry_reachable") == 1

    tampered = with_threshold(trained_model_dir, tmp_path / "v2", 0.6)
    (tampered / "model.onnx").write_bytes((tampered / "model.onnx").read_bytes()[:-10] + b"0" * 10)
    stand_in.folders["s2"] = tampered
    stand_in.aliases[CANARY] = ModelVersion("2", "s2", "run")
    asyncio.run(fleet.poll(pipeline))
    asyncio.run(fleet.poll(pipeline))  # refused once, not fetched again
    assert pipeline.canary is None
    assert registry.get_sample_value("content_tagger_model_refusals_total", {"reason": "tampered"}) == 1

    stand_in.folders["s3"] = with_threshold(trained_model_dir, tmp_path / "v3", 0.7)
    stand_in.aliases[CANARY] = ModelVersion("3", "s3", "run")
    asyncio.run(fleet.poll(pipeline))
    assert pipeline.canary is not None and pipeline.canary.threshold == 0.7 and pipeline.canary_fraction == 0.25
    del stand_in.aliases[CANARY]
    asyncio.run(fleet.poll(pipeline))
    assert pipeline.canary is None and pipeline.classifier.threshold == 0.5

    fleet.worker_name = "w"  # publishing its counts fails half-way: the worker goes on
    asyncio.run(fleet.poll(pipeline))
    assert registry.get_sample_value("content_tagger_registry_reachable") == 0
    assert pipeline.classifier.threshold == 0.5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TAGGER_REGISTRY_URL", "file:///srv/registry"),
        ("TAGGER_CANARY_FRACTION", "1.5"),
        ("TAGGER_CANARY_MIN_EVENTS", "0"),
        ("TAGGER_CANARY_MIN_JUDGED", "-1"),
        ("TAGGER_RETRAIN_DRIFT_SECONDS", "-5"),
        ("TAGGER_RETRAIN_DRIFT_PSI", "0"),
        ("TAGGER_RETRAIN_MIN_JUDGED", "-1"),
    ],
)
def test_bad_registry_and_retrain_settings_are_refused_with_the_variable_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})
