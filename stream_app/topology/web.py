"""The worker's web pages: ``/metrics``, ``/health`` and ``/ready``, open to all, and the review pages, which
only signed-in reviewers can act on (stream_app/review/page.py)."""

from __future__ import annotations

import time
from typing import Any

from faust.types import AppT
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from stream_app.pipeline import Pipeline, utc_iso
from stream_app.review.board import ReviewBoard
from stream_app.review.page import ReviewSite
from stream_app.review.sign_outs import SignOuts
from stream_app.review.views import REVIEW_PATHS, review_view
from stream_app.settings import Settings
from stream_app.title_index.follower import IndexFollower
from stream_app.topology.topics import WorkerTopics


def unready_reason(rebalances: int, rebalancing: bool, index_loaded: bool) -> str | None:
    """Why the worker cannot process events yet, or None once it can.

    Faust starts a rebalance when the consumer joins its group and ends it only once the partitions are assigned
    and the fetcher resumed; its web server (``/health``) answers before the first join.
    """
    if not index_loaded:
        return "loading the title index"
    if rebalances == 0:
        return "not yet joined its consumer group"
    if rebalancing:
        return "rebalancing: taking up partitions"
    return None


def register_pages(
    app: AppT,
    settings: Settings,
    registry: CollectorRegistry,
    pipeline: Pipeline,
    follower: IndexFollower,
    topics: WorkerTopics,
    board: ReviewBoard,
    signed_out: SignOuts,
) -> None:
    """Declare the worker's pages on ``app``."""

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        """Prometheus exposition of the worker's metrics."""
        return web.bytes(generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    async def health_page(web: Any, request: Any) -> Any:
        """Liveness: the model version served, and the canary's and the shadow's beside it (null without one)."""
        canary = pipeline.canary.version if pipeline.canary is not None else None
        shadow = pipeline.shadow.candidate.version if pipeline.shadow is not None else None
        return web.json({"status": "ok", "model_version": pipeline.classifier.version, "canary_version": canary,
                         "shadow_version": shadow})  # fmt: skip

    @app.page("/ready")
    async def ready_page(web: Any, request: Any) -> Any:
        """Readiness: 200 while the worker processes events, 503 with the reason before that (the title index
        loading, the group not joined) and in a rebalance."""
        reason = unready_reason(app.rebalancing_count, app.rebalancing, follower.ready.is_set())
        if reason is not None:
            return web.json({"status": "not ready", "reason": reason}, status=503)
        return web.json({"status": "ready", "model_version": pipeline.classifier.version})

    async def publish_decision(key: bytes, feedback: bytes, tagged: bytes) -> None:
        await (await topics.feedback.send(key=key, value=feedback))
        await (await topics.outputs["tagged"].send(key=key, value=tagged))

    async def publish_sign_out(key: bytes, value: bytes) -> None:
        await (await topics.sign_outs.send(key=key, value=value))

    site = ReviewSite(
        settings,
        board,
        publish_decision,
        lambda: utc_iso(time.time()),
        pipeline.metrics.sign_in,
        publish_sign_out=publish_sign_out,
        signed_out=signed_out,
    )
    for path in REVIEW_PATHS:
        app.page(path)(review_view(site))
