"""The review pages as Faust views: each aiohttp request read into a :class:`~.page.WebRequest`, answered by the
:class:`~.page.ReviewSite`, and its :class:`~.page.WebResponse` sent back; and the Faust options that leave Faust's
own views out."""

from __future__ import annotations

from typing import Any, Final

import faust.web

from stream_app.review.page import ReviewSite, WebRequest, WebResponse, plain_page
from stream_app.review.sessions import COOKIE

REVIEW_PATHS: Final = ("/review", "/review/sign-in", "/review/sign-out")
FAUST_VIEWS_OFF: Final[dict[str, Any]] = {
    "web_tables_enabled": False,
    "web_router_enabled": False,
    "web_stats_enabled": False,
    "web_graph_enabled": False,
    "web_metrics_enabled": False,
}
"""Faust app options that leave out Faust's own web views (``/table``, ``/router``, ``/stats``, ``/graph``,
``/performance``): they read table data and cluster state with no sign-in. Faust's ``/`` then answers
``{"status": "OK"}`` and nothing else."""


def review_view(site: ReviewSite) -> type[faust.web.View]:
    """A Faust view class (one per path: Faust keeps the path on the class) answering through ``site``."""

    class ReviewView(faust.web.View):
        """A review page, its forms, sign-in or sign-out."""

        async def get(self, request: Any) -> Any:
            return self._send(await site.handle(_web_request(request, site, {})))

        async def post(self, request: Any) -> Any:
            refused = site.refused_unread(_web_request(request, site, {}), request.content_type)
            if refused is not None:
                return self._send(refused)
            try:
                form = {key: str(value) for key, value in (await request.post()).items()}
            # A body that is not a form: not UTF-8, or an unknown charset.
            except (ValueError, LookupError, RuntimeError):
                return self._send(WebResponse(400, plain_page("Refused", "The form could not be read.")))
            return self._send(await site.handle(_web_request(request, site, form)))

        def _send(self, response: WebResponse) -> Any:
            return self.html(response.body, status=response.status, headers=dict(response.headers))

    return ReviewView


def _one(values: list[str]) -> str | None:
    """The value of a header sent once; None when it is missing or sent more than once: a proxy that adds its
    user header rather than replacing the client's leaves two, and the first, the client's, names anyone."""
    return values[0] if len(values) == 1 else None


def _web_request(request: Any, site: ReviewSite, form: dict[str, str]) -> WebRequest:
    """The :class:`WebRequest` of an aiohttp request."""
    return WebRequest(
        method=request.method,
        path=request.path,
        host=request.headers.get("Host", ""),
        peer=request.remote,
        cookie=request.cookies.get(COOKIE),
        form=form,
        origin=request.headers.get("Origin"),
        proxy_user=_one(request.headers.getall(site.settings.review_proxy_header, [])),
        # Every X-Forwarded-For header the request has, as one list: a proxy may append a header of its own.
        forwarded_for=",".join(request.headers.getall("X-Forwarded-For", [])) or None,
    )
