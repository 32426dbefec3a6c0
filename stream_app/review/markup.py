"""The review page's HTML: the oldest waiting items of a :class:`~stream_app.review.board.ReviewBoard`, each with
a form to decide it, and the page's notices; every item's own text isolated in ``<bdi>``."""

from __future__ import annotations

import html
from dataclasses import dataclass

from stream_app import APPROVED_TAGS
from stream_app.review.board import ReviewBoard
from stream_app.schema import MAX_TITLE_CHARS

SHOWN_DESCRIPTION_CHARS = 1000
"""Longest description the review page shows of an item (a decision still publishes it whole): the page is
rendered on the event loop for anyone who asks, and 50 items of 256 KiB would make megabytes of it."""
SHOWN_TITLE_CHARS = MAX_TITLE_CHARS
"""Longest title the review page shows of an item: the longest an input may have, so the page stays small
whatever reaches the board."""


@dataclass(frozen=True)
class ItemText:
    """An item's own text (its id) in a :data:`Notice`."""

    text: str


Notice = str | tuple[str | ItemText, ...]
"""A line of the page's status: plain text, or its parts in order, some of them an item's own text."""


def _isolated(text: str) -> str:
    """An item's text as HTML, escaped and in ``<bdi>``: bidi controls or right-to-left letters in it cannot
    reorder the words around it."""
    return f"<bdi>{html.escape(text)}</bdi>"


def _notice_html(notice: Notice) -> str:
    parts = (notice,) if isinstance(notice, str) else notice
    return "".join(_isolated(part.text) if isinstance(part, ItemText) else html.escape(part) for part in parts)


def _shown(text: str, limit: int) -> str:
    """A text as the page shows it: cut at ``limit`` characters, an ellipsis saying so."""
    if len(text) <= limit:
        return text
    return text[:limit] + "…"


def render_page(
    board: ReviewBoard,
    notice: Notice = "",
    limit: int = 50,
    *,
    reviewer: str | None = None,
    csrf: str = "",
    read_only: str = "",
    sign_out: bool = True,
) -> str:
    """The review page: the oldest waiting items, each with a form to decide it, and a form to report a wrong
    tag, for the signed-in ``reviewer`` (every form carries ``csrf``), and a sign-out button unless ``sign_out``
    is false (a proxy signs reviewers in and out); without a reviewer, the items alone and the ``read_only``
    explanation (HTML, the caller's own). Titles, descriptions and the item text of the ``notice`` are each
    isolated in ``<bdi>``."""
    esc = html.escape
    token = f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
    options = "".join(f'<option value="{esc(t)}">{esc(t)}</option>' for t in APPROVED_TAGS)
    items = []
    for n, (item_id, record) in enumerate(board.waiting_records(limit)):
        suggested = str(record["suggested_tag"])
        choices = "".join(
            f'<option value="{esc(t)}"{" selected" if t == suggested else ""}>{esc(t)}</option>' for t in APPROVED_TAGS
        )
        form = (
            f'<form method="post" action="/review">{token}<input type="hidden" name="action" value="review">'
            f'<input type="hidden" name="id" value="{esc(item_id)}">'
            f'<label for="tag-{n}">Tag</label> <select id="tag-{n}" name="tag">{choices}</select> '
            f'<button type="submit">Decide</button></form>'
        )
        items.append(
            f'<li><article aria-labelledby="title-{n}" data-id="{esc(item_id)}">'
            f'<h2 id="title-{n}">{_isolated(_shown(str(record.get("title") or ""), SHOWN_TITLE_CHARS))}</h2>'
            f"<p>{_isolated(_shown(str(record.get('description') or ''), SHOWN_DESCRIPTION_CHARS))}</p>"
            f"<p>Suggested: <strong>{esc(suggested)}</strong>, confidence {float(record['confidence']):.2f}</p>"
            f"{form if reviewer is not None else ''}</article></li>"
        )
    waiting = "".join(items) or "<li>Nothing is waiting for review.</li>"
    notice_html = f'<p role="status">{_notice_html(notice)}</p>' if notice else ""
    if reviewer is None:
        header, report = f'<p id="read-only">{read_only}</p>', ""
    else:
        signed_in = f"Signed in as <strong>{esc(reviewer)}</strong>"
        header = (
            f'<form method="post" action="/review/sign-out">{token}<p>{signed_in} <button type="submit">Sign out'
            "</button></p></form>"
            if sign_out
            else f"<p>{signed_in}</p>"
        )
        report = (
            '<h2 id="report">Report a wrong tag</h2><form method="post" action="/review" aria-labelledby="report">'
            f'{token}<input type="hidden" name="action" value="report">'
            '<label for="report-id">Item id</label> <input id="report-id" name="id" required> '
            f'<label for="report-tag">Right tag</label> <select id="report-tag" name="tag">{options}</select> '
            '<button type="submit">Report</button></form>'
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>content-tagger review</title></head>'
        f"<body><main><h1>Review</h1>{header}{notice_html}"
        f"<p>{_count(board)}</p><ol>{waiting}</ol>{report}</main></body></html>"
    )


def _count(board: ReviewBoard) -> str:
    """How many items wait, and whether more wait on the review topic than the board loaded."""
    if not board.not_loaded:
        return f"{len(board.waiting)} item(s) waiting."
    return (
        f"{len(board.waiting)} item(s) loaded, and more waiting on the review topic, not loaded: this worker holds "
        f"at most {board.max_waiting} at a time and loads the next, oldest first, as these are decided."
    )
