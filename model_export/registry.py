"""Log a training run to the model registry and register its model, when ``MLFLOW_TRACKING_URI`` (or
``--registry``) names one: parameters, the training data's hash, the evaluation's figures and slices, the card and
the ONNX file on the run; the offline comparison's verdict and figures as tags of the registered version.

A version whose offline comparison passed against the registry's ``champion`` becomes the ``shadow`` (unless a
shadow or a canary is already being judged), which the fleet's decider makes the ``canary`` once it compared well
with the champion on live traffic; the first version of a model becomes the champion. Every other version is
registered and tagged with why it will not serve (a later version found no champion alias, too).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from stream_app.lifecycle.registry import (
    CANARY,
    CHAMPION,
    EXPERIMENT,
    MODEL_FILES,
    SHADOW,
    ModelVersion,
    RegistryClient,
)


def flatten(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    """Leaves of nested dicts as ``a.b.c`` keys (lists are leaves), in the characters MLflow allows in a key."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            key = re.sub(r"[^\w\-. :/]", "_", str(key))
            yield from flatten(f"{prefix}.{key}" if prefix else key, inner)
    else:
        yield prefix, value


def numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def version_tags(model_card: Mapping[str, Any], reason: str) -> dict[str, str]:
    """The registered version's tags: the model's own version, the trigger, and the offline gate's verdict."""
    tags = {"model_version": str(model_card["version"]), "trigger": reason}
    promotion = model_card.get("promotion")
    if isinstance(promotion, Mapping):
        tags["gate.passed"] = str(bool(promotion.get("passed"))).lower()
        tags["gate.live_version"] = str(promotion.get("live_version"))
        tags["gate.reasons"] = json.dumps(promotion.get("reasons", []))
        for key, value in flatten("gate", {k: promotion.get(k) for k in ("live", "candidate")}):
            tags[key] = str(value)
    else:
        tags["gate.passed"] = "none"  # trained without --live: no comparison
    return tags


def log_training(url: str, out: Path, model_card: Mapping[str, Any], reason: str, model_name: str) -> ModelVersion:
    """Log the run that wrote ``out`` and register its model; returns the registered version."""
    client = RegistryClient(url, timeout=60.0)
    experiment = client.experiment_id(EXPERIMENT)
    run_id, artifact_uri = client.create_run(
        experiment, f"model-{model_card['version']}", {"trigger": reason, "model_version": str(model_card["version"])}
    )
    try:
        params = {key: json.dumps(value) for key, value in flatten("", model_card.get("hyperparameters", {}))}
        params["target_precision"] = str(model_card.get("target_precision"))
        evaluation = dict(flatten("", model_card.get("evaluation", {})))
        metrics = {key: float(value) for key, value in evaluation.items() if numeric(value)}
        metrics["threshold"] = float(model_card["threshold"])
        tags = {"data_sha256": str(model_card["sha256"]["training_data"]), "trigger": reason}
        client.log_batch(run_id, params, metrics, tags)
        for name in MODEL_FILES:
            client.upload(artifact_uri, f"model/{name}", (out / name).read_bytes())
        version = client.register(model_name, f"{artifact_uri}/model", run_id, version_tags(model_card, reason))
    except BaseException:
        client.end_run(run_id, "FAILED")
        raise
    client.end_run(run_id)
    assign_alias(client, model_name, version, model_card)
    return client.version(model_name, version.number)


def assign_alias(client: RegistryClient, model_name: str, version: ModelVersion, model_card: Mapping[str, Any]) -> None:
    """Point an alias at a new version as the module docstring says, or tag why none."""
    champion = client.alias(model_name, CHAMPION)
    promotion = model_card.get("promotion")
    if champion is None:
        if version.number != "1":
            # Versions before it served: the alias was removed, and no gate has judged this one. An operator who
            # means it to serve sets the alias.
            detail = "refused: no champion alias, and only the first version becomes champion unjudged"
            client.set_version_tag(model_name, version.number, "decision", detail)
            return
        client.set_alias(model_name, CHAMPION, version.number)
        client.set_version_tag(model_name, version.number, "decision", "champion: the first registered version")
        return
    if not isinstance(promotion, Mapping) or promotion.get("passed") is not True:
        client.set_version_tag(model_name, version.number, "decision", "refused: worse_offline")
        return
    if promotion.get("live_version") != champion.tags.get("model_version"):
        live = promotion.get("live_version")
        detail = f"refused: stale (compared with {live}, the champion is version {champion.number})"
        client.set_version_tag(model_name, version.number, "decision", detail)
        return
    if client.alias(model_name, SHADOW) is not None or client.alias(model_name, CANARY) is not None:
        detail = "waiting: another shadow or canary is being judged"
        client.set_version_tag(model_name, version.number, "decision", detail)
        return
    client.set_version_tag(model_name, version.number, "decision", "shadow")  # the reason before the alias
    client.set_alias(model_name, SHADOW, version.number)
