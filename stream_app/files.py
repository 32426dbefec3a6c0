"""Opening files the worker reads but does not own (model cards and models from a candidates folder, a registry
cache, the reviewers' accounts) as regular files only."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import BinaryIO


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading in binary; raises :class:`OSError` if it is not a regular file
    (:func:`regular_fd`)."""
    return os.fdopen(regular_fd(path), "rb")


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path``; :class:`OSError` if it is not one (:func:`regular_fd`) or holds more
    than ``limit`` bytes, of which no more than one past the limit is read."""
    with open_regular(path) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(f"{path} is larger than {limit} bytes")
    return data


def sha256_file(path: Path) -> str:
    """Hex sha256 of a regular file's bytes."""
    digest = hashlib.sha256()
    with open_regular(path) as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def regular_fd(path: Path, flags: int = os.O_RDONLY, mode: int = 0o666) -> int:
    """A file descriptor of ``path`` opened with ``flags``; raises :class:`OSError` if it is not a regular file. A
    FIFO or a device in its place would block the reader or writer, or never end: it is refused before a byte is
    read or written, and without waiting for the other end (the file is opened non-blocking, then checked)."""
    fd = os.open(path, flags | os.O_NONBLOCK, mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise
