"""The online half of guarded promotion: admit a candidate model, run it in shadow beside the live one, and
promote or refuse it. No Kafka here; the worker calls :meth:`ModelLifecycle.poll` from a timer.

A candidate is a folder in ``TAGGER_CANDIDATES_DIR`` holding ``model.onnx`` and ``model.json`` (written by
``python -m model_export --live ...``, which renames it into place whole). It is refused when it does not load
(corrupt, tampered, tags not approved), when its card does not say it passed the offline comparison, or passed it
against a model that no longer serves (stale). An admitted candidate shadows the live model: it classifies the
same events, nothing it says is emitted, and after ``TAGGER_SHADOW_EVENTS`` events :meth:`Shadow.verdict` decides.
A decided folder moves to ``promoted/`` or ``refused/`` (with ``decision.json``), so each is judged once; the
newest promoted folder is what a restarted worker serves."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from stream_app.classifier import Classifier, read_card
from stream_app.errors import ModelError
from stream_app.files import open_regular, sha256_file
from stream_app.lifecycle.shadow import Shadow

if TYPE_CHECKING:  # the pipeline imports this module for Shadow
    from stream_app.metrics import Metrics
    from stream_app.pipeline import Pipeline

log = logging.getLogger(__name__)

PROMOTED, REFUSED = "promoted", "refused"
MAX_DECISION_BYTES: Final = 1024 * 1024
"""Most of a ``decision.json`` read: what the worker writes is a few hundred bytes."""


@dataclass(frozen=True)
class Refusal:
    """Why a candidate will not serve."""

    reason: str
    detail: str


def admit(folder: Path, live_version: str, review_threshold: float | None = None) -> Classifier | Refusal:
    """Load a candidate and check its card's offline comparison; a :class:`Refusal` says why not."""
    try:
        candidate = Classifier.load(folder, review_threshold)
    except ModelError as error:
        return Refusal(error.reason, str(error))
    promotion = candidate.card.get("promotion")
    if not isinstance(promotion, dict) or promotion.get("passed") is not True:
        reasons = promotion.get("reasons") if isinstance(promotion, dict) else "no offline comparison in its card"
        return Refusal("worse_offline", f"{candidate.version}: {reasons}")
    if candidate.version == live_version:
        # Its bytes are the live model's, so its offline comparison and its shadow compare the live model with
        # itself and always pass: only its card (a threshold, a reference) would change, unchecked.
        return Refusal("worse_offline", f"{candidate.version} is the live model's version: only its card differs")
    return stale(candidate, live_version) or candidate


def stale(candidate: Classifier, live_version: str) -> Refusal | None:
    """The refusal of a candidate whose offline comparison (its card's ``promotion``) was with another model than
    the one serving, ``live_version``; None if it was with that one."""
    promotion = candidate.card.get("promotion")
    compared_with = promotion.get("live_version") if isinstance(promotion, dict) else None
    if compared_with == live_version:
        return None
    return Refusal("stale", f"compared with {compared_with}, but {live_version} serves")


def pending_candidates(candidates_dir: Path) -> list[Path]:
    """Candidate folders not yet decided, oldest first (folders being written start with a dot; a symbolic link is
    not a candidate folder); none (logged) when the folder cannot be listed."""
    try:
        if not candidates_dir.is_dir():
            return []
        # A linked folder's decision would be written through the link, outside the candidates folder; an export
        # renames a real folder into place.
        folders = [
            (p.stat().st_mtime, p.name, p) for p in candidates_dir.iterdir()
            if p.is_dir() and not p.is_symlink() and not p.name.startswith(".") and p.name not in (PROMOTED, REFUSED)
        ]  # fmt: skip
    except OSError as error:  # unreadable, or a folder removed between the listing and its stat
        log.warning("cannot list the candidates in %s: %s", candidates_dir, error)
        return []
    return [folder for _, _, folder in sorted(folders)]


def promoted_newest_first(candidates_dir: Path) -> list[Path]:
    """The promoted folders, the most recent first (:func:`promotion_order`): the order a restart tries them in.
    Those whose ``decision.json`` does not say when they were promoted are left out (logged); none (logged) when
    ``promoted/`` cannot be listed."""
    try:
        found = promotions(candidates_dir)
    except OSError as error:
        log.warning("cannot list the promoted models in %s: %s", candidates_dir / PROMOTED, error)
        return []
    return [folder for _, _, folder in sorted(((order, f.name, f) for order, f in found), reverse=True)]


def promotions(candidates_dir: Path) -> list[tuple[tuple[int, float], Path]]:
    """Each promoted folder with its :func:`promotion_order`, those whose ``decision.json`` is malformed left out;
    :class:`OSError` when ``promoted/`` is not a folder of its own (:func:`own_folder`)."""
    promoted = candidates_dir / PROMOTED
    found = []
    for folder in promoted.iterdir() if own_folder(promoted) else ():
        order = promotion_order(folder / "decision.json")
        if order is not None:
            found.append((order, folder))
    return found


def start_model_from(model_dir: Path, candidates_dir: Path, review_threshold: float | None) -> tuple[Classifier, Path]:
    """The model to serve at start-up and its folder: the most recent promotion that loads, checks and holds the
    model its ``decision.json`` names as promoted; else ``model_dir``, and :class:`ModelError` when that does not
    load. Each promotion passed over is logged: an earlier one, or ``model_dir``, serves instead of none."""
    for folder in promoted_newest_first(candidates_dir):
        try:
            model = Classifier.load(folder, review_threshold)
        except (ModelError, OSError) as error:
            log.warning("passing over the promoted folder %r: %r", str(folder), str(error))
            continue
        promoted = promoted_version(folder / "decision.json")
        if model.version == promoted:
            return model, folder
        # Its files were replaced after it was judged: what it holds now never passed the gates.
        log.warning("passing over the promoted folder %r: it holds model %s, but %r was promoted", str(folder),
                    model.version, promoted)  # fmt: skip
    return Classifier.load(model_dir, review_threshold), model_dir


def promoted_version(path: Path) -> str | None:
    """The model version the decision filed in ``path`` promoted (None when it cannot be read or names none)."""
    try:
        with open_regular(path) as handle:
            decision = json.loads(handle.read(MAX_DECISION_BYTES))
    except (OSError, ValueError, RecursionError):
        return None
    version = decision.get("version") if isinstance(decision, dict) else None
    return version if isinstance(version, str) else None


MAX_PROMOTION_NUMBER: Final = 2**53
"""Largest promotion number read: past it, a float could not tell two apart."""


def promotion_order(path: Path) -> tuple[int, float] | None:
    """Where the decision filed in ``path`` comes among promotions: its promotion number (counted up by each
    promotion; 0 in a decision filed without one), then when it was made (seconds since the epoch). None (logged)
    when the file is missing or malformed: anything but a JSON object whose ``decided_at`` is a finite number and
    whose ``promotion_number``, if any, an integer from 0 to :data:`MAX_PROMOTION_NUMBER`.

    The number comes first: a clock stepped back between two promotions would make the older one look newer."""
    try:
        with open_regular(path) as handle:
            decision = json.loads(handle.read(MAX_DECISION_BYTES))
        # AttributeError: not an object.
        decided_at, number = decision.get("decided_at"), decision.get("promotion_number", 0)
        # A bool is an int to Python, and NaN or infinity would win or lose every comparison with the others.
        if isinstance(decided_at, bool) or not isinstance(decided_at, int | float):
            raise ValueError(f"decided_at {decided_at!r:.60} is not a number")
        seconds = float(decided_at)  # OverflowError: an integer past any float
        if not math.isfinite(seconds):
            raise ValueError(f"decided_at {seconds} is not a time")
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= MAX_PROMOTION_NUMBER:
            raise ValueError(f"promotion_number {number!r:.60} is not a count")
    except (OSError, ValueError, RecursionError, AttributeError, OverflowError) as error:
        log.warning("passing over the promoted folder %r: its %s is malformed: %.200r", str(path.parent), path.name,
                    error)  # fmt: skip
        return None
    return number, seconds


def file_decision(
    folder: Path, candidates_dir: Path, outcome: str, detail: dict[str, Any], judged: Classifier | None = None
) -> Path:
    """Move a decided candidate to ``promoted/`` or ``refused/`` with its ``decision.json``; returns where. A
    promotion is numbered one past the highest filed. With ``judged``, the model that was judged, the folder must
    still hold it (its card and the bytes the card names), else :class:`ModelError` and nothing moves: a restart
    would serve what the folder holds.

    The decision is written into the folder (whole, by a rename) before the folder moves: a crash in between
    leaves a pending candidate, judged again at the next start, never a promoted folder without its decision,
    which a restart would pass over.

    Whoever writes the candidates folder may have put anything there: nothing is written, moved or removed through
    a symbolic link or into a file that is not a regular one (every step works on folders opened without following
    links), and a ``promoted/`` or ``refused/`` that is not a folder of its own is an :class:`OSError`."""
    if judged is not None:
        check_holds(folder, judged)
    decision: dict[str, Any] = {**detail, "outcome": outcome, "decided_at": time.time()}
    if outcome == PROMOTED:
        highest = max((order[0] for order, _ in promotions(candidates_dir)), default=0)
        # At the cap (a hostile or damaged file), ties are ordered by decided_at.
        decision["promotion_number"] = min(highest + 1, MAX_PROMOTION_NUMBER)
    with opened_folder(folder.parent) as source, opened_folder(candidates_dir) as parent:
        with opened_folder(folder, source) as own:
            write_whole(own, "decision.json", json.dumps(decision).encode())
        with contextlib.suppress(FileExistsError):
            os.mkdir(outcome, dir_fd=parent)
        with opened_folder(candidates_dir / outcome, parent) as decided:
            remove_decided(folder.name, decided, candidates_dir / outcome)
            os.rename(folder.name, folder.name, src_dir_fd=source, dst_dir_fd=decided)
    return candidates_dir / outcome / folder.name


def own_folder(path: Path) -> bool:
    """Whether ``path`` is a folder (False when nothing is there); :class:`OSError` when it is a symbolic link or
    another file, which the worker neither writes through nor reads as its own."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(mode):
        raise OSError(f"{path} is not a folder but a symbolic link or another file: it is not used")
    return True


@contextlib.contextmanager
def opened_folder(path: Path, parent: int | None = None) -> Iterator[int]:
    """A file descriptor of the folder ``path``, closed on exit. With ``parent``, a descriptor of the folder holding
    it, ``path.name`` is opened in that without following a link: :class:`OSError` when it is a symbolic link or
    another file."""
    try:
        if parent is None:  # the operator's setting, or a folder of it: a link there is theirs
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        else:
            fd = os.open(path.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
    except OSError as error:
        if parent is None:
            raise
        raise OSError(f"{path} is not a folder but a symbolic link or another file ({error.strerror}): nothing "
                      "is filed through it") from error  # fmt: skip
    try:
        yield fd
    finally:
        os.close(fd)


def write_whole(folder: int, name: str, data: bytes) -> None:
    """Write ``data`` to ``name`` in the folder ``folder`` whole: into a temporary file of its own, renamed over
    ``name``. Whatever has the temporary file's name (a crash's leftover, a link, a FIFO) is removed first, never
    opened: a link would be followed out of the folder, and a FIFO would block the write for good."""
    temporary = f".{name}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary, dir_fd=folder)  # the name only: what a link names is left alone
    # O_EXCL: a file put there again since the unlink is not written into either.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666, dir_fd=folder)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)


def remove_decided(name: str, decided: int, path: Path) -> None:
    """Remove the folder ``name`` an earlier decision filed in the folder ``decided`` (``path``), if any;
    :class:`OSError` when something else (a file, a link) is in the way: it is left there."""
    try:
        mode = os.lstat(name, dir_fd=decided).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        raise OSError(f"{path / name} is in the way: not a folder")
    shutil.rmtree(name, dir_fd=decided)  # removes links in it, never what they name


def check_holds(folder: Path, model: Classifier) -> None:
    """Raise :class:`ModelError` (``tampered``) unless ``folder`` holds ``model``: the card it was loaded with, and
    a ``model.onnx`` whose sha256 that card names."""
    card = read_card(folder / "model.json")
    try:
        digest = sha256_file(folder / "model.onnx")
    except OSError as error:
        raise ModelError(f"cannot read {folder / 'model.onnx'}: {error}", "tampered") from error
    if card != model.card or digest != card["sha256"]["model"]:
        raise ModelError(f"{folder} no longer holds model {model.version}: its files changed after it was judged",
                         "tampered")  # fmt: skip


class ModelLifecycle:
    """Candidates one at a time: admit or refuse, shadow, then promote (swap the pipeline's model) or refuse.

    Listing, loading, hashing and filing candidates run on a thread (:func:`asyncio.to_thread`): a model of a few
    MB takes tens of milliseconds to hash and load, which the event loop would spend away from Kafka.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        metrics: Metrics,
        candidates_dir: Path,
        shadow_events: int,
        review_threshold: float | None = None,
        *,
        registry: bool = False,
        serving_dir: Path | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.metrics = metrics
        self.candidates_dir = candidates_dir
        self.shadow_events = shadow_events
        self.review_threshold = review_threshold
        self.registry = registry
        """Whether a model registry decides the fleet's model: then no folder candidate is taken up."""
        self.trial: tuple[Path, Shadow] | None = None
        self.unfiled: set[str] = set()
        """Candidates decided but not moved to ``promoted/`` or ``refused/`` (logged): not judged again until a
        restart."""
        self.passed_over: set[str] = set()
        """Candidates left pending because of the registry, each logged once."""
        self.serving_dir = serving_dir
        """The folder of the model the pipeline serves, unless another part (the registry's follower) swapped it:
        the one served at start, then the last one promoted here."""

    async def poll(self) -> None:
        """Decide a finished shadow run, or take up the next pending candidate (none with a registry: logged)."""
        if self.registry:
            # One worker promoting a folder alone would serve another model than the fleet, and the registry
            # follower would not swap it back until the champion changed.
            for folder in await asyncio.to_thread(pending_candidates, self.candidates_dir):
                if folder.name not in self.passed_over:
                    self.passed_over.add(folder.name)
                    log.warning(
                        "candidate %r is not taken up: with TAGGER_REGISTRY_URL the registry decides the fleet's "
                        "model (register it with python -m model_export --registry)",
                        str(folder),
                    )
            return
        if self.trial is not None:
            folder, shadow = self.trial
            if not shadow.done:
                return
            self.trial, self.pipeline.shadow = None, None
            if shadow.failure is not None:
                await self._refuse(folder, Refusal("corrupt", f"it failed while shadowing: {shadow.failure}"))
                return
            # Another model may have taken over while it shadowed (the fleet's champion, say).
            refusal = stale(shadow.candidate, self.pipeline.classifier.version)
            if refusal is not None:
                await self._refuse(folder, refusal)
                return
            passed, figures = shadow.verdict()
            if passed:
                await self._promote(folder, shadow.candidate, {"shadow": figures})
            else:
                await self._refuse(folder, Refusal("worse_shadow", json.dumps(figures)))
            return
        for folder in await asyncio.to_thread(pending_candidates, self.candidates_dir):
            if folder.name in self.unfiled:
                continue
            result = await asyncio.to_thread(admit, folder, self.pipeline.classifier.version, self.review_threshold)
            if isinstance(result, Refusal):
                await self._refuse(folder, result)
                continue
            if self.shadow_events == 0:
                await self._promote(folder, result, {"shadow": None})
                return
            log.info("shadowing candidate model %s for %d events", result.version, self.shadow_events)
            self.trial = (folder, Shadow(result, self.shadow_events))
            self.pipeline.shadow = self.trial[1]
            return

    async def _promote(self, folder: Path, candidate: Classifier, detail: dict[str, Any]) -> None:
        previous = self.pipeline.classifier.version
        self.pipeline.swap(candidate)
        detail = {"version": candidate.version, "replaced": previous, **detail}
        self.serving_dir = await self._file(folder, PROMOTED, detail, candidate) or folder
        self.metrics.promoted()
        log.warning("promoted model %s (replacing %s)", candidate.version, previous)

    async def _refuse(self, folder: Path, refusal: Refusal) -> None:
        detail = {"reason": refusal.reason, "detail": refusal.detail}
        await self._file(folder, REFUSED, detail)
        self.metrics.refused(refusal.reason)
        log.warning("refused candidate model in %r: %s (%r)", folder.name, refusal.reason, refusal.detail)

    async def _file(
        self, folder: Path, outcome: str, detail: dict[str, Any], judged: Classifier | None = None
    ) -> Path | None:
        """:func:`file_decision`, and where the folder went; a folder that cannot be filed (read-only, something in
        the way, or files changed since ``judged`` was loaded from it) is logged and passed over until a restart
        (None): the decision holds in this process, and the worker goes on. A restart judges it again."""
        try:
            return await asyncio.to_thread(file_decision, folder, self.candidates_dir, outcome, detail, judged)
        except (OSError, ModelError) as error:
            self.unfiled.add(folder.name)
            log.error("cannot file candidate %r in %s/ (%r): it stays where it is", folder.name, outcome, str(error))
            return None
