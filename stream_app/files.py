"""Opening files the worker reads but does not own (model cards and models from a candidates folder, a registry
cache) as regular files only."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading in binary; raises :class:`OSError` if it is not a regular file. A FIFO or a
    device in its place would block the reader, or never end: it is refused before a byte is read, and without
    waiting for a writer (the file is opened non-blocking, then checked)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
