"""Opening files the worker reads but does not own (model cards and models from a candidates folder, a registry
cache) as regular files only."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading in binary; raises :class:`OSError` if it is not a regular file
    (:func:`regular_fd`)."""
    return os.fdopen(regular_fd(path), "rb")


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
