"""The fleet's registry without a server: the canary split, routing by version, the fleet's verdicts on the canary
and the shadow, a worker following the aliases of a stand-in registry that goes away and comes back, and the
champion it remembers for its next start (a pointer file it does not trust)."""

from __future__ import annotations

import asyncio
import http.server
import json
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from stream_app.classifier import Classifier
from stream_app.dedupe import DedupeVerdict
from stream_app.errors import ConfigError
from stream_app.lifecycle.champion import cached_champion
from stream_app.lifecycle.fleet import FleetModel, fleet_model, registry_cache, start_model
from stream_app.lifecycle.fleet_counts import (
    SHADOW_PREFIX,
    VersionCounts,
    canary_verdict,
    fleet_counts,
    metric_values,
    shadow_counts,
    worker_counts,
)
from stream_app.lifecycle.registry import (
    CANARY,
    CHAMPION,
    MAX_JSON_BYTES,
    MAX_SEARCH_BYTES,
    POINTER,
    SHADOW,
    ModelVersion,
    RegistryClient,
    RegistryError,
    version_folder,
)
from stream_app.lifecycle.shadow import ShadowCounts
from stream_app.metrics import Metrics
from stream_app.pipeline import Admitted, Pipeline, canary_share
from stream_app.review.board import ReviewBoard
from stream_app.review.follower import ReviewFollower
from stream_app.review.labels import LabelStore
from stream_app.review.sign_outs import SignOuts
from stream_app.settings import Settings
from tests.unit.review.test_board import NOW, tagged_record
from tests.unit.review.test_follower import EDGES, SECRET, SETTINGS, encoded, message, signed
from tests.unit.test_lifecycle import candidate, nan_candidate
from tests.unit.test_pipeline import admit, make_pipeline

CHAMPION_VERSION, CANARY_VERSION = "champion0001", "canary000002"


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


def test_a_healthy_canary_keeps_its_share_batch_after_batch(trained_model_dir: Path, tmp_path: Path) -> None:
    pipeline, registry = make_pipeline(trained_model_dir)
    canary = Classifier.load(with_threshold(trained_model_dir, tmp_path / "canary", 0.99999))
    canary._version = "canary000000"
    pipeline.set_canary(canary, 0.5)
    for first in (0, 100, 200):
        batch = [
            admit(pipeline, {"id": f"e{n}", "title": f"Graph neural networks {n}"}, n)
            for n in range(first, first + 100)
        ]
        outputs = pipeline.route_batch([b for b in batch if isinstance(b, Admitted)], unique)
        assert 25 < sum(o.record["model_version"] == canary.version for o in outputs) < 75
    assert pipeline.canary is canary and pipeline.failed_canaries == {}
    assert registry.get_sample_value("content_tagger_model_refusals_total", {"reason": "corrupt"}) == 0


def test_a_canary_s_events_a_second_look_turns_into_copies_leave_its_share_in_step(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    """The canary's share is a mask over the batch's texts: a copy found by the second look leaves both, or every
    event after it would be served by the other model."""
    pipeline, _ = make_pipeline(trained_model_dir)
    canary = Classifier.load(with_threshold(trained_model_dir, tmp_path / "canary", 0.99999))
    canary._version = "canary000000"
    pipeline.set_canary(canary, 0.5)
    batch = [admit(pipeline, {"id": f"e{n}", "title": f"Graph neural networks {n}"}, n) for n in range(40)]
    fresh = [item for item in batch if isinstance(item, Admitted)]
    checked = pipeline.dedupe(fresh, unique)
    predictions = checked.classify()
    copies = {n: DedupeVerdict(fresh[n].dedupe_key, "elsewhere", "exact", 1.0) for n in range(0, 40, 3)}
    outputs = pipeline.route(checked, checked.turn_copies(copies, predictions))
    for n, output in enumerate(outputs):
        if n in copies:
            assert output.kind == "duplicate"
        else:
            expected = canary.version if canary_share(f"e{n}") < 0.5 else pipeline.classifier.version
            assert output.record["model_version"] == expected, n


def test_the_canary_is_promoted_only_when_it_sends_no_more_to_review_and_is_as_precise() -> None:
    champion = VersionCounts(tagged=800, review=200, judged=100, correct=95, shown=800, reported=8)
    assert canary_verdict(champion, VersionCounts(tagged=40, review=10), 100, 0) is None  # too few events
    assert canary_verdict(champion, VersionCounts(tagged=400, review=100), 100, 10) is None  # nobody judged yet
    assert canary_verdict(champion, VersionCounts(tagged=400, review=100), 100, 0) == (True, [])
    # 0.3 of 500 is past 0.2 + 0.05 + the noise of 500 events; of 100 events, it is within the noise.
    assert canary_verdict(champion, VersionCounts(tagged=70, review=30), 100, 0) == (True, [])
    passed, reasons = canary_verdict(champion, VersionCounts(tagged=350, review=150), 100, 0) or (True, [])
    assert not passed and reasons[0].startswith("review share 0.300 > 0.286")
    worse = VersionCounts(400, 100, judged=100, correct=80, shown=400, reported=40)
    passed, reasons = canary_verdict(champion, worse, 100, 10) or (True, [])
    assert not passed and reasons[0].startswith("online precision 0.900 <"), reasons
    as_good = VersionCounts(400, 100, judged=20, correct=18, shown=400, reported=4)
    assert canary_verdict(champion, as_good, 100, 10) == (True, [])


def test_the_canary_s_precision_is_that_of_the_items_shown_not_of_the_review_suggestions_accepted(
    trained_model_dir: Path,
) -> None:
    """Every review item is judged, a shown one only when someone reports it: a retrain on corrections makes better
    suggestions, which must not hide five times as many wrong tags on the platform."""
    pipeline, _ = make_pipeline(trained_model_dir)
    metrics = pipeline.metrics

    def traffic(version: str, accepted: int, reported: int) -> None:
        metrics.model_served.labels(version, "tagged").inc(9000)
        metrics.model_served.labels(version, "review").inc(1000)
        for _ in range(9000):
            metrics.shown(version)
        for n in range(1000):
            metrics.judged("accepted" if n < accepted else "corrected", version, "review", "mlops", n < accepted)
        for _ in range(reported):
            metrics.judged("reported", version, "tagged", "mlops", False)

    traffic("champion0001", accepted=600, reported=180)
    traffic("canary000002", accepted=950, reported=900)
    counts = worker_counts(metrics)
    assert counts["champion0001"].precision == pytest.approx(0.98)
    assert counts["canary000002"].precision == pytest.approx(0.90)
    passed, reasons = canary_verdict(counts["champion0001"], counts["canary000002"], 500, 0) or (True, [])
    assert not passed and reasons[0].startswith("online precision 0.900 <"), reasons


class DecidersView:
    """One worker's review follower and metrics, started with ``before_start`` records already on the tagged
    topic, and the fleet's counts as the decider reads them from its run in the registry."""

    def __init__(self, tmp_path: Path, before_start: int = 0) -> None:
        tmp_path.mkdir(exist_ok=True)
        self.metrics = Metrics(CollectorRegistry(), EDGES)
        board, labels = ReviewBoard(recent_limit=100_000), LabelStore(tmp_path / "labels.jsonl")
        self.follower = ReviewFollower(SETTINGS, board, self.metrics, labels, SignOuts(SECRET, caught_up=True))
        self.follower.counted_from = {TopicPartition(SETTINGS.tagged_topic, 0): before_start}
        self.tagged_offset = self.feedback_offset = 0

    def tag(self, version: str, *ids: str) -> None:
        """Records of the model ``version`` on the tagged topic, one per id."""
        for item_id in ids:
            record = {**tagged_record(item_id), "model_version": version}
            self.follower.on_record(message(SETTINGS.tagged_topic, encoded(record), self.tagged_offset))
            self.tagged_offset += 1

    def report(self, *ids: str) -> None:
        """Signed reports (from the review page) that the items' tags are wrong."""
        for item_id in ids:
            decision = {"id": item_id, "tag": "other", "verdict": "reported", "reviewer": "ann", "decided_at": NOW}
            self.follower.on_record(message(SETTINGS.feedback_topic, encoded(signed(decision)), self.feedback_offset))
            self.feedback_offset += 1

    def fleet(self, served: dict[str, tuple[int, int]]) -> dict[str, VersionCounts]:
        """The fleet's counts once the held reports are judged, with the events the pipelines ``served`` per
        version (tagged, review), read back from the worker's run as the registry returns it."""
        self.follower.release()
        for version, (tagged, review) in served.items():
            self.metrics.served(version, "tagged", tagged)
            self.metrics.served(version, "review", review)
        metrics = [{"key": key, "value": value} for key, value in metric_values(worker_counts(self.metrics)).items()]
        run = {"data": {"tags": [{"key": "worker", "value": "w1"}], "metrics": metrics}}
        return fleet_counts([json.loads(json.dumps(run))])


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{number}" for number in range(n)]


def test_reports_on_items_shown_before_the_worker_started_do_not_count_against_the_version(tmp_path: Path) -> None:
    """The reports counted and the items counted as shown must be the same items: reviewers working through
    a backlog shown before the decider's worker started would make the champion read less precise (a worse canary
    promoted) or report more than it showed (a good canary refused)."""
    view = DecidersView(tmp_path / "worse", before_start=1000)
    view.tag(CHAMPION_VERSION, *ids("old", 1000), *ids("new", 1000))
    view.tag(CANARY_VERSION, *ids("canary", 600))
    view.report(*ids("new", 20), *ids("old", 40), *ids("canary", 40))
    fleet = view.fleet({CHAMPION_VERSION: (1800, 200), CANARY_VERSION: (600, 66)})
    champion, canary = fleet[CHAMPION_VERSION], fleet[CANARY_VERSION]
    assert (champion.shown, champion.reported, champion.precision) == (1000, 20, pytest.approx(0.98))
    assert canary_verdict(champion, canary, 500, 0) == (False, ["online precision 0.933 < 0.949 (champion 0.980)"])

    view = DecidersView(tmp_path / "better", before_start=1000)
    view.tag(CHAMPION_VERSION, *ids("old", 1000), *ids("new", 100))
    view.tag(CANARY_VERSION, *ids("canary", 600))
    view.report(*ids("old", 150), *ids("canary", 3))
    fleet = view.fleet({CHAMPION_VERSION: (900, 100), CANARY_VERSION: (600, 66)})
    assert (fleet[CHAMPION_VERSION].shown, fleet[CHAMPION_VERSION].reported) == (100, 0)
    assert canary_verdict(fleet[CHAMPION_VERSION], fleet[CANARY_VERSION], 500, 0) == (True, [])


def test_records_on_the_tagged_topic_the_pipelines_did_not_tag_cannot_raise_a_versions_precision(
    tmp_path: Path,
) -> None:
    """Tagged records are not signed: anyone who can write to the topic could name the canary in thousands of
    them, none ever reported, and choose which model serves. A version showed at most what the pipelines tagged."""
    view = DecidersView(tmp_path)
    view.tag(CHAMPION_VERSION, *ids("champion", 1000))
    view.tag(CANARY_VERSION, *ids("canary", 600), *ids("forged", 2000))
    view.report(*ids("champion", 20), *ids("canary", 40))
    fleet = view.fleet({CHAMPION_VERSION: (1800, 200), CANARY_VERSION: (600, 66)})
    assert (fleet[CANARY_VERSION].shown, fleet[CANARY_VERSION].reported) == (600, 40)
    assert canary_verdict(fleet[CHAMPION_VERSION], fleet[CANARY_VERSION], 500, 0) == (
        False, ["online precision 0.933 < 0.949 (champion 0.980)"])  # fmt: skip


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
    # Served events are each worker's own; the decision is every worker's (each reads every one), counted once.
    assert (fleet[version].served, fleet[version].judged) == (6, 1)


def test_decisions_every_worker_counted_are_counted_once_and_a_restarted_workers_runs_add_up() -> None:
    """Two workers each served their own events and each counted all 100 decisions; a third, restarted once,
    counted 40 before its restart and 50 after. The fleet judged 100, not 290, at the precision they saw."""

    def run(worker: str, **counts: Any) -> dict[str, Any]:
        made = counts_run("v", **counts)
        made["data"]["tags"] = [{"key": "worker", "value": worker}]
        return made

    runs = [
        run("a", tagged=300, review=20, judged=100, correct=90, shown=560, reported=5),
        run("b", tagged=200, review=10, judged=100, correct=90, shown=540, reported=5),
        run("c", tagged=50, review=5, judged=40, correct=36, shown=45, reported=1),
        run("c", tagged=60, review=5, judged=50, correct=45, shown=55, reported=2),
    ]
    # Shown and reported, like judged, are each worker's view of the whole fleet, taken from the same worker.
    assert fleet_counts(runs) == {"v": VersionCounts(610, 40, judged=100, correct=90, shown=560, reported=5)}
    assert fleet_counts(runs[2:]) == {"v": VersionCounts(110, 10, judged=90, correct=81, shown=100, reported=3)}


def counts_run(version: str, **counts: Any) -> dict[str, Any]:
    """A worker's run in the fleet experiment, as the registry returns it, with the metrics ``<field>.<version>``."""
    return {"data": {"metrics": [{"key": f"{name}.{version}", "value": value} for name, value in counts.items()]}}


def test_runs_and_values_that_are_not_counts_are_left_out_of_the_fleets_sums() -> None:
    """A run is whatever the registry sent: a malformed one is skipped, and a value that is not a finite count
    (NaN, infinite, negative, absurdly large, not a number) is not summed: one NaN would make every sum NaN."""
    runs = [
        "x", None, {"data": []}, {"data": {"metrics": "k"}}, {"data": {"metrics": ["k", {"key": 7, "value": 1}]}},
        counts_run("v2", tagged=90, review=10, judged=20, correct=18),
        counts_run("v2", tagged=float("nan"), review=float("inf"), judged=-20, correct="NaN"),
        counts_run("v2", tagged="1e400", review=1e300, judged=True, correct=[1]),
        counts_run("v2", tagged="10", review=None),
    ]  # fmt: skip
    assert fleet_counts(runs) == {"v2": VersionCounts(tagged=100, review=10, judged=20, correct=18)}
    shadow = [*runs, counts_run("v2", shadow_compared=50, shadow_agreed=float("nan"), shadow_review=-1)]
    assert shadow_counts(shadow) == {"v2": ShadowCounts(compared=50)}


def test_a_canary_or_shadow_never_passes_on_counts_that_are_not_counts() -> None:
    """Without evidence, no verdict passes: a value that is not a count would make every comparison false, and a
    part larger than its whole is not a count of it."""
    champion = counts_run("champ", tagged=900, review=100, judged=100, correct=95)
    worse = counts_run("canary", tagged=0, review=600, judged=100, correct=0)
    for hostile in (counts_run("canary", review=float("nan"), correct=float("nan")), counts_run("canary", review=-600)):
        counts = fleet_counts([champion, worse, hostile])
        verdict = canary_verdict(counts["champ"], counts["canary"], 500, 50)
        assert verdict is not None and not verdict[0], verdict
    only_nan = fleet_counts([champion, counts_run("canary", tagged="NaN", review="NaN", judged="NaN")])
    assert canary_verdict(only_nan["champ"], only_nan.get("canary", VersionCounts()), 500, 0) is None  # no evidence
    # Parts larger than their whole are no evidence either (a worker reporting more correct than judged).
    passed, reasons = canary_verdict(VersionCounts(900, 100, 100, 95), VersionCounts(900, 100, 10, 1000), 500, 0) or (
        True, [])  # fmt: skip
    assert not passed and "more correct than judged" in reasons[0], reasons
    reported = VersionCounts(900, 100, 10, 5, shown=10, reported=50)
    passed, reasons = canary_verdict(VersionCounts(900, 100, 100, 95, shown=900), reported, 500, 0) or (True, [])
    assert not passed and "more reported than shown" in reasons[0], reasons
    shadow = shadow_counts([counts_run("s", shadow_compared=500, shadow_agreed=10, shadow_review=500,
                                       shadow_live_review=0), counts_run("s", shadow_agreed=float("nan"),
                                                                         shadow_review=float("nan"))])  # fmt: skip
    assert not shadow["s"].verdict()[0]
    passed, figures = ShadowCounts(compared=100, agreed=500, review=0, live_review=0).verdict()
    assert not passed and "more agreed than compared" in figures["reasons"][0], figures


def test_the_client_fetches_only_artifacts_the_registry_serves() -> None:
    client = RegistryClient("http://127.0.0.1:9")
    for source in ("file:///etc", "s3://bucket/model", "mlflow-artifacts:/1/../../etc"):
        with pytest.raises(RegistryError):
            client.download(source, "model.onnx")
    with pytest.raises(RegistryError):
        RegistryClient("file:///tmp/registry")


@pytest.mark.parametrize("number", ["../../../tmp/x", "1/../..", "0", "-1", "1e3", " 1", "", "1" * 10, "١"])
def test_a_version_number_that_is_not_one_is_refused_before_it_names_a_cache_folder(number: str) -> None:
    source = "mlflow-artifacts:/1/run/artifacts/model"
    assert ModelVersion.from_response({"version": "12", "source": source}).number == "12"
    with pytest.raises(RegistryError, match="malformed model version"):
        ModelVersion.from_response({"version": number, "source": source})


class StandIn:
    """A registry holding aliases and version folders, which can be made not to answer."""

    def __init__(self) -> None:
        self.up = True
        self.aliases: dict[str, ModelVersion] = {}
        self.folders: dict[str, Path] = {}
        self.downloads: Counter[str] = Counter()
        """Files downloaded, by version source."""

    def alias(self, name: str, alias: str) -> ModelVersion | None:
        if not self.up:
            raise RegistryError("connection refused")
        return self.aliases.get(alias)

    def download(self, source: str, relative: str) -> bytes:
        self.downloads[source] += 1
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


def test_a_cache_that_cannot_be_written_is_no_unreachable_registry_and_refuses_no_version(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    """A full disk under the cache read as "the registry does not answer": the reachability gauge fell to 0, though
    the registry had answered, and the alert and the operator looked at the wrong machine."""
    pipeline, registry = make_pipeline(trained_model_dir)
    folder_model = pipeline.classifier
    stand_in = StandIn()
    stand_in.folders["s1"] = with_threshold(trained_model_dir, tmp_path / "v1", 0.5)
    stand_in.aliases[CHAMPION] = ModelVersion("1", "s1", "run")
    disk = tmp_path / "disk"
    disk.write_text("a file where the cache's folder would be: no folder can be made in it, as on a full disk")
    fleet = FleetModel(stand_in, "m", disk / "cache", pipeline.metrics, canary_fraction=0.25)  # type: ignore[arg-type]
    asyncio.run(fleet.poll(pipeline))
    assert pipeline.classifier is folder_model
    assert registry.get_sample_value("content_tagger_registry_reachable") == 1
    assert not fleet.refused_numbers  # the version is not to blame: the fleet must not refuse it
    disk.unlink()  # space again
    asyncio.run(fleet.poll(pipeline))
    assert pipeline.classifier.threshold == 0.5 and registry.get_sample_value("content_tagger_registry_reachable") == 1


def test_the_registry_cache_keeps_only_what_an_alias_names_and_the_champion_served(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    pipeline, _ = make_pipeline(trained_model_dir)
    stand_in = StandIn()
    cache = tmp_path / "cache"
    fleet = FleetModel(stand_in, "m", cache, pipeline.metrics)  # type: ignore[arg-type]
    versions = {}
    for number, threshold in (("1", 0.5), ("2", 0.6), ("3", 0.7)):
        stand_in.folders[f"s{number}"] = with_threshold(trained_model_dir, tmp_path / f"v{number}", threshold)
        versions[number] = ModelVersion(number, f"s{number}", "run")

    def cached() -> set[str]:
        return {entry.name for entry in cache.iterdir()}

    stand_in.aliases[CHAMPION], stand_in.aliases[CANARY] = versions["1"], versions["2"]
    asyncio.run(fleet.poll(pipeline))
    one, two, three = (version_folder(cache, versions[n]).name for n in "123")
    assert cached() == {one, two, POINTER}
    (cache / "operator-notes.txt").write_text("not the worker's to remove")
    (cache / f".{three}.partial").mkdir()  # a download a crash interrupted
    stand_in.aliases[CHAMPION] = versions["3"]
    del stand_in.aliases[CANARY]
    asyncio.run(fleet.poll(pipeline))
    assert pipeline.classifier.threshold == 0.7 and pipeline.canary is None
    assert cached() == {three, POINTER, "operator-notes.txt"}

    tampered = stand_in.folders["s1"]  # the champion moves to a version that fails its checks: 3 stays served
    (tampered / "model.onnx").write_bytes((tampered / "model.onnx").read_bytes()[:-10] + b"0" * 10)
    stand_in.aliases[CHAMPION] = ModelVersion("4", "s1", "run")
    asyncio.run(fleet.poll(pipeline))
    assert pipeline.classifier.threshold == 0.7 and three in cached()


def test_a_registry_version_whose_card_is_malformed_is_refused_and_the_other_aliases_are_followed(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    """A malformed card is one bad version: refused and counted, while the registry still counts as answering and
    the other aliases are followed; a card without a drift reference is refused before it could be swapped in."""
    pipeline, registry = make_pipeline(trained_model_dir)
    stand_in = StandIn()
    fleet = FleetModel(stand_in, "m", tmp_path / "cache", pipeline.metrics)  # type: ignore[arg-type]
    for number, edit in (("7", lambda card: card.pop("version")), ("8", lambda card: card.update(reference=[]))):
        folder = with_threshold(trained_model_dir, tmp_path / f"v{number}", 0.5)
        card = json.loads((folder / "model.json").read_text())
        edit(card)
        (folder / "model.json").write_text(json.dumps(card))
        stand_in.folders[f"s{number}"] = folder
    stand_in.aliases[CHAMPION] = ModelVersion("7", "s7", "run")
    stand_in.folders["s9"] = with_threshold(trained_model_dir, tmp_path / "v9", 0.6)
    stand_in.aliases[CANARY] = ModelVersion("9", "s9", "run")
    asyncio.run(fleet.poll(pipeline))
    assert registry.get_sample_value("content_tagger_registry_reachable") == 1
    assert pipeline.canary is not None and pipeline.canary.threshold == 0.6
    stand_in.aliases[CHAMPION] = ModelVersion("8", "s8", "run")
    asyncio.run(fleet.poll(pipeline))
    assert pipeline.classifier.threshold != 0.5 and registry.get_sample_value("content_tagger_registry_reachable") == 1
    assert registry.get_sample_value("content_tagger_model_refusals_total", {"reason": "corrupt"}) == 2
    assert fleet.refused == {"s7", "s8"}


def registry_settings(model_dir: Path, data_dir: Path) -> Settings:
    return Settings.from_env({"TAGGER_REGISTRY_URL": "http://127.0.0.1:9", "TAGGER_REGISTRY_MODEL": "m",
                              "TAGGER_MODEL_DIR": str(model_dir), "TAGGER_DATA_DIR": str(data_dir),
                              "TAGGER_CANDIDATES_DIR": str(data_dir / "candidates")})  # fmt: skip


def test_a_restarted_worker_serves_the_champion_it_took_up_until_the_registry_answers(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    settings = registry_settings(trained_model_dir, tmp_path / "data")
    pipeline, _ = make_pipeline(trained_model_dir)
    stand_in = StandIn()
    stand_in.folders["s1"] = with_threshold(trained_model_dir, tmp_path / "v1", 0.5)
    stand_in.aliases[CHAMPION] = ModelVersion("1", "s1", "run")
    fleet = FleetModel(stand_in, "m", settings.data_dir / "registry", pipeline.metrics)  # type: ignore[arg-type]
    asyncio.run(fleet.poll(pipeline))
    assert pipeline.classifier.threshold == 0.5

    served, folder = start_model(settings)  # the registry is down: nothing is asked of it
    assert served.threshold == 0.5 and served.version == pipeline.classifier.version and folder == fleet.champion_dir
    other_model = registry_settings(trained_model_dir, settings.data_dir)
    object.__setattr__(other_model, "registry_model", "another")
    assert start_model(other_model)[0].threshold != 0.5  # another registered model's champion is not served


def flip_a_byte(path: Path) -> None:
    """A disk error in ``path``: one bit of its middle byte flipped."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_damaged_cached_champion_is_downloaded_again_and_served_not_refused_at_every_start(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    """One flipped byte in the cached champion made every start serve the model folder for good: the version was
    refused from its cached copy, never downloaded again, and the copy was kept because the alias names it."""
    settings = registry_settings(trained_model_dir, tmp_path / "data")
    champion = candidate(tmp_path, trained_model_dir, "v1")
    version = Classifier.load(champion).version
    stand_in = StandIn()
    stand_in.folders["s1"] = champion
    stand_in.aliases[CHAMPION] = ModelVersion("1", "s1", "run", {"model_version": version})
    pipeline, _ = make_pipeline(trained_model_dir)
    asyncio.run(FleetModel(stand_in, "m", registry_cache(settings), pipeline.metrics).poll(pipeline))  # type: ignore[arg-type]
    flip_a_byte(version_folder(registry_cache(settings), stand_in.aliases[CHAMPION]) / "model.onnx")

    served, folder = start_model(settings)  # the damaged copy is not served
    assert folder == trained_model_dir
    restarted, registry = make_pipeline(folder)
    fleet = fleet_model(settings, restarted.metrics, served.version)
    assert fleet is not None
    fleet.client, fleet.worker_name = stand_in, ""  # type: ignore[assignment]
    asyncio.run(fleet.poll(restarted))
    assert restarted.classifier.version == version and not fleet.refused_numbers
    assert registry.get_sample_value("content_tagger_model_refusals_total", {"reason": "tampered"}) == 0
    assert stand_in.downloads["s1"] == 4  # model and card, once by each start
    assert start_model(settings)[0].version == version  # the next start serves it from the cache again


@pytest.mark.parametrize("alias", [CHAMPION, CANARY, SHADOW])
@pytest.mark.parametrize("damage", ["flipped byte", "another model"])
def test_a_cached_copy_that_is_not_the_registrys_version_is_downloaded_again_not_refused(
    trained_model_dir: Path, tmp_path: Path, alias: str, damage: str
) -> None:
    """A disk error or a changed file in one worker's cache says nothing of the registry's copy: a worker that
    refused the version for it would publish the refusal, and the decider refuse a good version for the fleet."""
    stand_in = StandIn()
    stand_in.folders["s2"] = candidate(tmp_path, trained_model_dir, "v2")
    version = Classifier.load(stand_in.folders["s2"]).version
    stand_in.aliases[alias] = ModelVersion("2", "s2", "run", {"model_version": version})
    cache = tmp_path / "cache"
    pipeline, _ = make_pipeline(trained_model_dir)
    asyncio.run(FleetModel(stand_in, "m", cache, pipeline.metrics).poll(pipeline))  # type: ignore[arg-type]
    cached = version_folder(cache, stand_in.aliases[alias])
    if damage == "flipped byte":
        flip_a_byte(cached / "model.onnx")
    else:  # a model that loads and checks, but not the one the registry's version is
        shutil.rmtree(cached)
        shutil.copytree(trained_model_dir, cached)

    restarted, registry = make_pipeline(trained_model_dir)
    fleet = FleetModel(stand_in, "m", cache, restarted.metrics)  # type: ignore[arg-type]
    asyncio.run(fleet.poll(restarted))
    asyncio.run(fleet.poll(restarted))
    shadow = restarted.shadow.candidate if restarted.shadow is not None else None
    taken_up = {CHAMPION: restarted.classifier, CANARY: restarted.canary, SHADOW: shadow}[alias]
    assert taken_up is not None and taken_up.version == version
    assert not fleet.refused_numbers and not fleet.refused
    assert registry.get_sample_value("content_tagger_model_refusals_total", {"reason": "tampered"}) == 0
    assert stand_in.downloads["s2"] == 4 and Classifier.load(cached).version == version


def test_a_version_whose_download_fails_its_checks_is_downloaded_once_per_start_not_at_every_poll(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    pipeline, registry = make_pipeline(trained_model_dir)
    stand_in = StandIn()
    stand_in.folders["s2"] = candidate(tmp_path, trained_model_dir, "v2")
    flip_a_byte(stand_in.folders["s2"] / "model.onnx")  # the registry's own copy is bad
    stand_in.aliases[CANARY] = ModelVersion("2", "s2", "run")
    for start in (1, 2):
        fleet = FleetModel(stand_in, "m", tmp_path / "cache", pipeline.metrics)  # type: ignore[arg-type]
        for _ in range(3):
            asyncio.run(fleet.poll(pipeline))
        assert pipeline.canary is None and fleet.refused_numbers == {"2"}
        assert stand_in.downloads["s2"] == 2 * start  # model and card, once by each start
    assert registry.get_sample_value("content_tagger_model_refusals_total", {"reason": "tampered"}) == 2


def hostile_pointers(cache: Path, good: dict[str, Any]) -> dict[str, bytes]:
    """Pointer files a worker must not follow, each naming why."""
    outside = cache.parent / "outside"
    outside.mkdir()
    (cache / "escape").symlink_to(outside)
    return {
        "not json": b'{"number": "1", "model_vers',
        "a list": b"[1, 2, 3]",
        "deep nesting": b"[" * 5000,
        "a number for the folder": json.dumps({**good, "folder": 7}).encode(),
        "missing the model version": json.dumps({k: v for k, v in good.items() if k != "model_version"}).encode(),
        "a folder up the tree": json.dumps({**good, "folder": "../outside"}).encode(),
        "an absolute folder": json.dumps({**good, "folder": str(outside)}).encode(),
        "a symlink out": json.dumps({**good, "folder": "escape"}).encode(),
        "the cache itself": json.dumps({**good, "folder": "."}).encode(),
        "another model version": json.dumps({**good, "model_version": "0" * 12}).encode(),
        "not utf-8": b"\xff\xfe{}",
    }


def test_a_pointer_that_is_not_one_or_names_a_folder_that_fails_its_checks_falls_back_to_the_model_folder(
    trained_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = registry_settings(trained_model_dir, tmp_path / "data")
    cache = settings.data_dir / "registry"
    cache.mkdir(parents=True)
    cached = with_threshold(trained_model_dir, cache / "v1-abc", 0.5)
    folder_model = Classifier.load(trained_model_dir)
    good = {"model_name": "m", "number": "1", "model_version": folder_model.version, "folder": "v1-abc"}
    (cache / POINTER).write_text(json.dumps(good))
    assert start_model(settings)[0].threshold == 0.5
    for why, body in hostile_pointers(cache, good).items():
        (cache / POINTER).write_bytes(body)
        caplog.clear()
        served, folder = start_model(settings)
        assert (served.threshold, folder) == (folder_model.threshold, trained_model_dir), why
        assert "serving the model folder" in caplog.text, why
    (cache / POINTER).write_text(json.dumps(good))
    (cached / "model.onnx").write_bytes((cached / "model.onnx").read_bytes()[:-10] + b"0" * 10)  # tampered
    assert start_model(settings)[1] == trained_model_dir
    (cache / POINTER).unlink()
    assert start_model(settings)[1] == trained_model_dir


def test_a_champion_pointer_cannot_print_a_log_line_of_its_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The pointer's version number and model version are a file's text, logged when its folder does not load."""
    cache = tmp_path / "cache"
    (cache / "v1-0123456789abcdef").mkdir(parents=True)
    forged = "1\n[WARNING] stream_app.lifecycle.fleet: serving registry version 9"
    pointer = {"model_name": "m", "number": forged, "model_version": forged, "folder": "v1-0123456789abcdef"}
    (cache / POINTER).write_text(json.dumps(pointer))
    assert cached_champion(cache, "m") is None
    said = [r.getMessage() for r in caplog.records if "cached champion" in r.getMessage()]
    assert said and not [line for line in said if "\n" in line], said


class Decisions(StandIn):
    """A stand-in registry that also keeps version tags, the workers' runs, and the order of its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[dict[str, Any]] = []
        self.tags: dict[str, dict[str, str]] = {}
        self.writes: list[str] = []

    def experiment_id(self, name: str) -> str:
        return "fleet"

    def create_run(self, experiment_id: str, name: str, tags: dict[str, str]) -> tuple[str, str]:
        self.runs.append({"info": {"run_id": name}, "data": {"metrics": []}})
        return name, ""

    def log_batch(self, run_id: str, metrics: dict[str, float]) -> None:
        (run,) = [r for r in self.runs if r["info"]["run_id"] == run_id]
        run["data"]["metrics"] = [{"key": k, "value": v} for k, v in metrics.items()]

    def search_runs(self, experiment_id: str) -> list[dict[str, Any]]:
        return self.runs

    def set_version_tag(self, name: str, number: str, key: str, value: str) -> None:
        self.tags.setdefault(number, {})[key] = value
        self.writes.append(f"tag {key}")

    def set_alias(self, name: str, alias: str, number: str) -> None:
        self.aliases[alias] = next(v for v in [*self.aliases.values(), self.shadowed] if v.number == number)
        self.writes.append(f"set {alias}")

    def delete_alias(self, name: str, alias: str) -> None:
        self.aliases.pop(alias, None)
        self.writes.append(f"delete {alias}")

    shadowed = ModelVersion("2", "s2", "run", {"model_version": "shadow000001"})


def shadow_run(worker: str, compared: int, agreed: int, review: int, live_review: int) -> dict[str, Any]:
    counts = {"compared": compared, "agreed": agreed, "review": review, "live_review": live_review}
    metrics = [{"key": f"shadow_{k}.shadow000001", "value": v} for k, v in counts.items()]
    return {"info": {"run_id": worker}, "data": {"metrics": metrics}}


def decider(
    stand_in: Decisions, trained_model_dir: Path, tmp_path: Path, shadow_events: int
) -> tuple[FleetModel, Pipeline]:
    pipeline, _ = make_pipeline(trained_model_dir)
    stand_in.folders["s1"] = trained_model_dir
    stand_in.folders["s2"] = with_threshold(trained_model_dir, tmp_path / "v2", 0.6)
    stand_in.aliases[CHAMPION] = ModelVersion("1", "s1", "run", {"model_version": pipeline.classifier.version})
    stand_in.aliases[SHADOW] = stand_in.shadowed
    fleet = FleetModel(stand_in, "m", tmp_path / "cache", pipeline.metrics)  # type: ignore[arg-type]
    fleet.decides, fleet.shadow_events = True, shadow_events
    return fleet, pipeline


def test_the_decider_makes_the_shadow_the_canary_once_the_fleet_compared_enough_and_it_agrees(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    stand_in = Decisions()
    fleet, pipeline = decider(stand_in, trained_model_dir, tmp_path, shadow_events=50)
    stand_in.runs = [shadow_run("a", 30, 29, 3, 3)]
    asyncio.run(fleet.poll(pipeline))
    assert SHADOW in stand_in.aliases and CANARY not in stand_in.aliases  # 30 of 50 compared: not yet
    stand_in.runs.append(shadow_run("b", 25, 24, 2, 2))
    asyncio.run(fleet.poll(pipeline))
    assert stand_in.aliases[CANARY].number == "2" and SHADOW not in stand_in.aliases
    figures = json.loads(stand_in.tags["2"]["shadow"])
    assert figures["events"] == 55 and figures["agreement"] == 53 / 55 and figures["reasons"] == []
    assert stand_in.tags["2"]["decision"] == "canary: the shadow passed"
    assert stand_in.writes == ["tag shadow", "tag decision", "set canary", "delete shadow"]


def test_the_decider_refuses_a_shadow_that_disagrees_with_the_champion_across_the_fleet(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    stand_in = Decisions()
    fleet, pipeline = decider(stand_in, trained_model_dir, tmp_path, shadow_events=50)
    # Each worker alone would pass the agreement rule; their sum does not (and sends more to review).
    stand_in.runs = [shadow_run("a", 30, 28, 3, 3), shadow_run("b", 30, 15, 12, 3)]
    stand_in.aliases[CANARY] = ModelVersion("3", "s3", "run", {"model_version": "canary000001"})
    stand_in.folders["s3"] = with_threshold(trained_model_dir, tmp_path / "v3", 0.7)
    asyncio.run(fleet.poll(pipeline))
    assert SHADOW in stand_in.aliases and "2" not in stand_in.tags  # waits while another canary is judged
    del stand_in.aliases[CANARY]
    asyncio.run(fleet.poll(pipeline))
    decision = stand_in.tags["2"]["decision"]
    assert decision.startswith("refused: worse_shadow: agreement 0.717 < 0.8; review share 0.250 > 0.150"), decision
    assert SHADOW not in stand_in.aliases and CANARY not in stand_in.aliases
    assert stand_in.writes == ["tag shadow", "tag decision", "delete shadow"]
    asyncio.run(fleet.poll(pipeline))
    assert pipeline.shadow is None


def test_every_worker_runs_the_shadow_beside_the_champion_emits_nothing_of_it_and_publishes_its_counts(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    stand_in = Decisions()
    fleet, pipeline = decider(stand_in, trained_model_dir, tmp_path, shadow_events=10_000)
    fleet.decides, fleet.worker_name = False, "w1"
    asyncio.run(fleet.poll(pipeline))
    assert pipeline.shadow is not None and pipeline.shadow.candidate.threshold == 0.6
    batch = [admit(pipeline, {"id": f"e{n}", "title": f"Graph neural networks {n}"}, n) for n in range(20)]
    outputs = pipeline.route_batch([b for b in batch if isinstance(b, Admitted)], unique)
    assert len(outputs) == 20 and {o.record["model_version"] for o in outputs} == {pipeline.classifier.version}
    asyncio.run(fleet.poll(pipeline))  # publishes
    (counts,) = shadow_counts(stand_in.runs).values()
    assert counts.compared == 20 and counts.agreed == 20  # the same bytes: the same tags
    assert counts.review >= counts.live_review  # a higher threshold sends at least as many to review
    assert fleet_counts(stand_in.runs)[pipeline.classifier.version].served == 20  # the champion's counts beside
    shadow_version = pipeline.shadow.candidate.version
    exported = {(s.name, tuple(sorted(s.labels.items()))): s.value for metric in (
        pipeline.metrics.shadow_compared, pipeline.metrics.shadow_agreed, pipeline.metrics.shadow_review)
        for family in metric.collect() for s in family.samples if s.name.endswith("_total")}  # fmt: skip
    version = ("version", shadow_version)
    assert exported[("content_tagger_shadow_compared_total", (version,))] == counts.compared
    assert exported[("content_tagger_shadow_agreed_total", (version,))] == counts.agreed
    assert exported[("content_tagger_shadow_review_total", (("model", "shadow"), version))] == counts.review
    assert exported[("content_tagger_shadow_review_total", (("model", "live"), version))] == counts.live_review
    del stand_in.aliases[SHADOW]
    asyncio.run(fleet.poll(pipeline))
    assert pipeline.shadow is None
    assert ShadowCounts(10, 10, 0, 0).verdict()[0] and not ShadowCounts(10, 7, 0, 0).verdict()[0]


def test_a_shadow_alias_that_moves_between_two_polls_replaces_the_shadow_the_worker_runs(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    """A worker that missed the poll where no shadow was set (the registry away from it, a slow poll) must compare
    the new shadow, not go on running the old one, which the fleet refused, until it restarts."""
    stand_in = Decisions()
    worker, pipeline = decider(stand_in, trained_model_dir, tmp_path, shadow_events=10_000)
    worker.decides, worker.worker_name = False, "w1"
    asyncio.run(worker.poll(pipeline))
    assert pipeline.shadow is not None and pipeline.shadow.candidate.threshold == 0.6
    stand_in.folders["s3"] = candidate(tmp_path, trained_model_dir, "v3")
    third = Classifier.load(stand_in.folders["s3"]).version
    stand_in.aliases[SHADOW] = ModelVersion("3", "s3", "run", {"model_version": third})
    asyncio.run(worker.poll(pipeline))
    assert pipeline.shadow is not None and pipeline.shadow.candidate.version == third
    batch = [admit(pipeline, {"id": f"e{n}", "title": f"Graph neural networks {n}"}, n) for n in range(20)]
    pipeline.route_batch([b for b in batch if isinstance(b, Admitted)], unique)
    asyncio.run(worker.poll(pipeline))  # publishes
    assert shadow_counts(stand_in.runs)[third].compared == 20

    damaged = candidate(tmp_path, trained_model_dir, "v4")
    flip_a_byte(damaged / "model.onnx")
    stand_in.folders["s4"] = damaged
    stand_in.aliases[SHADOW] = ModelVersion("4", "s4", "run")
    asyncio.run(worker.poll(pipeline))  # refused here: no shadow rather than the one before
    assert pipeline.shadow is None and worker.refused_numbers == {"4"}


def test_a_shadow_one_worker_cannot_load_is_refused_for_the_fleet(trained_model_dir: Path, tmp_path: Path) -> None:
    """A worker refuses a version whose files fail their checks there (a damaged download, another onnxruntime):
    it says so in its run, and the decider refuses the version rather than let it become the canary and the
    champion while that worker goes on serving the old model unseen."""
    stand_in = Decisions()
    for place in ("worker", "decider"):
        (tmp_path / place).mkdir()
    worker, pipeline = decider(stand_in, trained_model_dir, tmp_path / "worker", shadow_events=50)
    worker.decides, worker.worker_name = False, "w1"
    damaged = tmp_path / "damaged"
    shutil.copytree(trained_model_dir, damaged)
    (damaged / "model.onnx").write_bytes(b"not the model its card names")
    stand_in.folders["s2"] = damaged
    asyncio.run(worker.poll(pipeline))
    assert pipeline.shadow is None and worker.refused_numbers == {"2"}
    asyncio.run(worker.poll(pipeline))  # publishes its run, refusal included
    stand_in.runs.append(shadow_run("w2", 60, 60, 1, 1))  # another worker ran it, and it agreed
    stand_in.folders["s2"] = with_threshold(trained_model_dir, tmp_path / "v2", 0.6)
    fleet, other = decider(stand_in, trained_model_dir, tmp_path / "decider", shadow_events=50)
    asyncio.run(fleet.poll(other))
    assert SHADOW not in stand_in.aliases and CANARY not in stand_in.aliases
    assert stand_in.tags["2"]["decision"] == "refused: worse_shadow: a worker refused to load it (its log says why)"


def test_a_shadow_that_fails_on_live_traffic_stops_shadowing_and_is_refused_for_the_fleet(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    """Every worker runs the registry's shadow: a model that passes its checks at load but fails on traffic (a
    probability that is not a number) must neither stop them nor become the canary."""
    stand_in = Decisions()
    for place in ("worker", "decider"):
        (tmp_path / place).mkdir()
    worker, pipeline = decider(stand_in, trained_model_dir, tmp_path / "worker", shadow_events=50)
    worker.decides, worker.worker_name = False, "w1"
    stand_in.folders["s2"] = nan_candidate(tmp_path, trained_model_dir, "nan")
    asyncio.run(worker.poll(pipeline))
    assert pipeline.shadow is not None
    batch = [admit(pipeline, {"id": f"e{n}", "title": f"Graph neural networks {n}"}, n) for n in range(20)]
    outputs = pipeline.route_batch([b for b in batch if isinstance(b, Admitted)], unique)
    assert {o.record["model_version"] for o in outputs} == {pipeline.classifier.version} and len(outputs) == 20
    asyncio.run(worker.poll(pipeline))  # sees the failure and publishes its run, refusal included
    assert worker.refused_numbers == {"2"}
    stand_in.runs.append(shadow_run("w2", 60, 60, 1, 1))  # another worker's run agreed, before it failed there
    stand_in.folders["s2"] = with_threshold(trained_model_dir, tmp_path / "v2", 0.6)
    fleet, other = decider(stand_in, trained_model_dir, tmp_path / "decider", shadow_events=50)
    asyncio.run(fleet.poll(other))
    assert SHADOW not in stand_in.aliases and CANARY not in stand_in.aliases


def test_a_canary_that_fails_on_live_traffic_is_refused_for_the_fleet(trained_model_dir: Path, tmp_path: Path) -> None:
    """The champion serves the failed canary's events on that batch (Pipeline.route); the worker's run then names
    the version refused, as one that does not load, so the decider never makes it the champion."""
    stand_in = Decisions()
    worker, pipeline = decider(stand_in, trained_model_dir, tmp_path, shadow_events=50)
    worker.decides, worker.worker_name, worker.canary_fraction = False, "w1", 0.5
    del stand_in.aliases[SHADOW]
    stand_in.folders["s3"] = nan_candidate(tmp_path, trained_model_dir, "nan")
    stand_in.aliases[CANARY] = ModelVersion("3", "s3", "run")
    asyncio.run(worker.poll(pipeline))
    assert pipeline.canary is not None
    batch = [admit(pipeline, {"id": f"e{n}", "title": f"Graph neural networks {n}"}, n) for n in range(20)]
    outputs = pipeline.route_batch([b for b in batch if isinstance(b, Admitted)], unique)
    assert {o.record["model_version"] for o in outputs} == {pipeline.classifier.version} and len(outputs) == 20
    asyncio.run(worker.poll(pipeline))
    assert pipeline.canary is None and worker.refused_numbers == {"3"}


def test_a_canary_of_the_champions_own_model_version_is_refused_not_judged_on_the_champions_traffic(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    """Counts are kept per model version, so a canary of the champion's version (the same bytes under another card
    threshold) would be judged against itself and always pass."""
    stand_in = Decisions()
    fleet, pipeline = decider(stand_in, trained_model_dir, tmp_path, shadow_events=50)
    del stand_in.aliases[SHADOW]
    champion_version = pipeline.classifier.version
    stand_in.folders["s3"] = with_threshold(trained_model_dir, tmp_path / "v3", 0.9)
    stand_in.aliases[CANARY] = ModelVersion("3", "s3", "run", {"model_version": champion_version})
    stand_in.runs = [counts_run(champion_version, tagged=900, review=100, judged=100, correct=95)]
    asyncio.run(fleet.poll(pipeline))
    assert stand_in.aliases[CHAMPION].number == "1" and CANARY not in stand_in.aliases
    decision = stand_in.tags["3"]["decision"]
    assert decision.startswith("refused: worse_canary: it is the champion's model version"), decision
    assert stand_in.writes == ["tag canary", "tag decision", "delete canary"]
    asyncio.run(fleet.poll(pipeline))
    assert pipeline.canary is None


class HostileRegistry(http.server.BaseHTTPRequestHandler):
    """Answers every call of the REST API with the server's ``body``, except the aliases when ``aliases_unset``
    (so that the calls after them are made too); with ``raw`` set, sends those bytes instead of an HTTP answer."""

    def answer(self) -> None:
        server: Any = self.server
        # Read whole: a request's unread bytes at the close would reset the connection before the client read all.
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if server.raw:
            self.wfile.write(server.raw)
            self.close_connection = True
            return
        unset = server.aliases_unset and "registered-models/alias" in self.path
        body = b'{"error_code": "RESOURCE_DOES_NOT_EXIST"}' if unset else server.body
        self.send_response(404 if unset else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture()
def hostile_registry() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HostileRegistry)
    server.raw = b""  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def assert_poll_serves_on_as_if_unanswered(
    model_dir: Path, tmp_path: Path, hostile_registry: http.server.ThreadingHTTPServer
) -> None:
    """A deciding worker's poll of ``hostile_registry`` raises nothing, keeps the model it serves and counts the
    registry as not answering."""
    pipeline, registry = make_pipeline(model_dir)
    client = RegistryClient(f"http://127.0.0.1:{hostile_registry.server_port}", timeout=10)
    fleet = FleetModel(client, "m", tmp_path / "cache", pipeline.metrics)
    fleet.worker_name, fleet.decides = "w", True
    served = pipeline.classifier
    asyncio.run(fleet.poll(pipeline))
    assert pipeline.classifier is served
    assert registry.get_sample_value("content_tagger_registry_reachable") == 0


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"model_version": ' * 5_000])
@pytest.mark.parametrize("aliases_unset", [False, True])
def test_a_malformed_answer_from_the_registry_counts_as_no_answer_never_as_an_error_out_of_the_poll(
    trained_model_dir: Path,
    tmp_path: Path,
    hostile_registry: http.server.ThreadingHTTPServer,
    body: bytes,
    aliases_unset: bool,
) -> None:
    """JSON nested too deeply to parse is a malformed answer like any other: the registry counts as not answering,
    and nothing is raised out of the worker's timer."""
    hostile_registry.body, hostile_registry.aliases_unset = body, aliases_unset  # type: ignore[attr-defined]
    assert_poll_serves_on_as_if_unanswered(trained_model_dir, tmp_path, hostile_registry)


A_VERSION: Final = {"model_version": {"version": "1", "source": "mlflow-artifacts:/1/run/artifacts/model"}}
"""A model version's answer as the REST API gives it, which a worker takes up."""


def test_a_json_answer_past_a_mebibyte_counts_as_no_answer(
    trained_model_dir: Path, tmp_path: Path, hostile_registry: http.server.ThreadingHTTPServer
) -> None:
    """Parsed, JSON takes up to 25 times its size: an alias answered with 255 MB took a worker from 533 MB to 6.9 GB,
    and a MemoryError out of the poll stopped it. An alias answer is a few hundred bytes."""
    client = RegistryClient(f"http://127.0.0.1:{hostile_registry.server_port}", timeout=10)
    hostile_registry.aliases_unset = False  # type: ignore[attr-defined]
    hostile_registry.body = json.dumps({**A_VERSION, "padding": "x" * MAX_JSON_BYTES}).encode()  # type: ignore[attr-defined]
    with pytest.raises(RegistryError, match=f"more than {MAX_JSON_BYTES} bytes"):
        client.alias("m", CHAMPION)
    assert_poll_serves_on_as_if_unanswered(trained_model_dir, tmp_path, hostile_registry)
    hostile_registry.body = json.dumps({**A_VERSION, "padding": "x" * 1000}).encode()  # type: ignore[attr-defined]
    assert client.alias("m", CHAMPION) == ModelVersion("1", "mlflow-artifacts:/1/run/artifacts/model", "")


def fleet_runs(count: int, versions: int, shadows: int) -> bytes:
    """An answer of ``runs/search`` as MLflow writes it (indented by two): ``count`` workers' runs, each with the
    counts of ``versions`` model versions and ``shadows`` shadows."""
    keys = [*metric_values({f"{v:012x}": VersionCounts() for v in range(versions)}),
            *metric_values({f"{v:012x}": ShadowCounts() for v in range(shadows)}, SHADOW_PREFIX)]  # fmt: skip
    worker = "content-tagger@worker-host-01:6066"

    def run(run_id: str) -> dict[str, Any]:
        info = {"run_uuid": run_id, "run_id": run_id, "experiment_id": "3", "run_name": worker, "user_id": "",
                "status": "RUNNING", "start_time": 1765000000000, "lifecycle_stage": "active",
                "artifact_uri": f"mlflow-artifacts:/3/{run_id}/artifacts"}  # fmt: skip
        metrics = [{"key": key, "value": 123456.0, "timestamp": 1765000000000, "step": 0} for key in keys]
        tags = [{"key": "worker", "value": worker}, {"key": "mlflow.runName", "value": worker}]
        return {"info": info, "data": {"metrics": metrics, "tags": tags}}

    return json.dumps({"runs": [run(f"{n:032x}") for n in range(count)]}, indent=2).encode()


def test_a_search_of_the_fleets_runs_is_read_up_to_16_mebibytes(
    hostile_registry: http.server.ThreadingHTTPServer,
) -> None:
    """The one answer larger than a mebibyte: the decider searches up to 1,000 runs, a run a worker's start."""
    client = RegistryClient(f"http://127.0.0.1:{hostile_registry.server_port}", timeout=10)
    hostile_registry.aliases_unset = False  # type: ignore[attr-defined]
    hostile_registry.body = fleet_runs(1000, versions=5, shadows=2)  # type: ignore[attr-defined]
    assert 6 * 2**20 < len(hostile_registry.body) < 7 * 2**20  # type: ignore[attr-defined]
    assert len(client.search_runs("3")) == 1000
    hostile_registry.body = fleet_runs(1000, versions=15, shadows=5)  # type: ignore[attr-defined]
    assert len(hostile_registry.body) > MAX_SEARCH_BYTES  # type: ignore[attr-defined]
    with pytest.raises(RegistryError, match=f"more than {MAX_SEARCH_BYTES} bytes"):
        client.search_runs("3")


@pytest.mark.parametrize(
    "raw",
    [
        b"garbage\r\n\r\n",  # no status line
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # a chunk size that is not one
        b"HTTP/1.1 200 OK\r\n" + b"X-Filler: y\r\n" * 200 + b"\r\n{}",  # more headers than http.client reads
    ],
    ids=["no-status-line", "bad-chunk", "too-many-headers"],
)
def test_an_answer_that_is_not_http_counts_as_no_answer_never_as_an_error_out_of_the_poll(
    trained_model_dir: Path, tmp_path: Path, hostile_registry: http.server.ThreadingHTTPServer, raw: bytes
) -> None:
    """Something at the registry's address that does not speak HTTP (a broken proxy, another service) leaves every
    worker serving what it serves: an error out of the poll would stop each worker of the fleet, at every start."""
    hostile_registry.raw = raw  # type: ignore[attr-defined]
    assert_poll_serves_on_as_if_unanswered(trained_model_dir, tmp_path, hostile_registry)


def test_a_download_cut_short_is_a_registry_error_not_a_damaged_version_to_refuse(
    hostile_registry: http.server.ThreadingHTTPServer,
) -> None:
    """Its bytes would fail their checks: the worker would refuse the version, and the decider refuse it for the
    fleet, for a connection that closed early."""
    body = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    client = RegistryClient(f"http://127.0.0.1:{hostile_registry.server_port}", timeout=10)
    hostile_registry.raw = body + b"x" * 1000  # type: ignore[attr-defined]
    assert client.download("mlflow-artifacts:/1/run/artifacts/model", "model.onnx") == b"x" * 1000
    hostile_registry.raw = body + b"x" * 400  # type: ignore[attr-defined]
    with pytest.raises(RegistryError, match="cut short, 600 bytes missing"):
        client.download("mlflow-artifacts:/1/run/artifacts/model", "model.onnx")


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
        ("TAGGER_RETRAIN_GRID", "quick"),
    ],
)
def test_bad_registry_and_retrain_settings_are_refused_with_the_variable_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})
