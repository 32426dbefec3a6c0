"""The champion pointer: the registry version a worker last took up, kept beside the registry cache, which the
worker serves at its next start while the registry does not answer (checked again then, as any cached folder)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from stream_app.classifier import Classifier
from stream_app.errors import ModelError
from stream_app.files import open_regular
from stream_app.lifecycle.registry import POINTER

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pointer:
    """The champion a worker last took up: the registered model, its version number there, its model version and its
    cached folder."""

    model_name: str
    number: str
    model_version: str
    folder: Path


def write_pointer(cache_dir: Path, pointer: Pointer) -> None:
    """Remember ``pointer`` in :data:`POINTER` (written beside it, then renamed: a crash leaves the old one)."""
    body = {
        "model_name": pointer.model_name,
        "number": pointer.number,
        "model_version": pointer.model_version,
        "folder": pointer.folder.name,
    }
    staging = cache_dir / f".{POINTER}.partial"
    staging.write_text(json.dumps(body))
    os.replace(staging, cache_dir / POINTER)


def read_pointer(cache_dir: Path, model_name: str) -> Pointer | None:
    """The champion of ``model_name`` :func:`write_pointer` remembered, or None (logged) when there is none or it is
    not one: not JSON, not four strings, another registered model's, or a folder that is not directly in
    ``cache_dir`` (``..``, absolute, a symlink out). Whether the folder's model loads and checks is the caller's to
    find out."""
    path = cache_dir / POINTER
    try:
        with open_regular(path) as handle:
            body = json.loads(handle.read(10_000))
        keys = ("model_name", "number", "model_version", "folder")
        named, number, model_version, name = (body[key] for key in keys)
        if not all(isinstance(value, str) and value for value in (named, number, model_version, name)):
            raise ValueError(f"not the strings {keys}")
        if named != model_name:
            raise ValueError(f"it names the champion of {named!r}, not of {model_name!r}")
        root = cache_dir.resolve()
        folder = (cache_dir / name).resolve()
        if folder.parent != root:
            raise ValueError(f"the folder {name!r} is not in {cache_dir}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError, RecursionError) as error:
        log.warning("ignoring the cached champion pointer %s: %s", path, error)
        return None
    return Pointer(model_name, number, model_version, folder)


def remember(cache_dir: Path, pointer: Pointer) -> None:
    """Write the champion pointer; a worker that cannot (disk full, read-only) goes on serving, and logs it."""
    try:
        write_pointer(cache_dir, pointer)
    except OSError as error:
        log.warning("cannot remember the champion in %s: %s", cache_dir, error)


def load_as(folder: Path, model_version: str | None, review_threshold: float | None) -> Classifier:
    """The model in ``folder``, loaded and checked, when it is ``model_version`` (any model when that is empty);
    raises :class:`ModelError` otherwise."""
    model = Classifier.load(folder, review_threshold)
    if model_version and model.version != model_version:
        raise ModelError(f"{folder} holds model {model.version}, not {model_version}", "tampered")
    return model


def cached_champion(
    cache_dir: Path, model_name: str, review_threshold: float | None = None
) -> tuple[Pointer, Classifier] | None:
    """The champion this worker last took up, loaded and checked, or None (logged) when there is none that is whole:
    no pointer, a pointer that is not one, a folder that does not load and check, or holds another model."""
    pointer = read_pointer(cache_dir, model_name)
    if pointer is None:
        return None
    try:
        model = load_as(pointer.folder, pointer.model_version, review_threshold)
    except (ModelError, OSError) as error:
        log.warning("the cached champion, version %r, does not load as model %r: %r", pointer.number,
                    pointer.model_version, str(error))  # fmt: skip
        return None
    return pointer, model
