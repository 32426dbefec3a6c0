"""The C library's memory allocator, tuned for a worker whose title index is large arrays copied as they grow.

Both calls are glibc's; where the C library lacks them (musl, another platform), they do nothing and say so.
"""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter: the size from which ``malloc`` maps a block of its own (unmapped when freed)."""
MMAP_THRESHOLD_BYTES = 128 * 1024


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Give freed large blocks back to the system at once; False where the C library does not take the setting.

    glibc raises its threshold to the size of each mapped block freed, up to 32 MB, and allocates below it from
    the heap, where freed blocks stay resident wherever a live one sits above them. The title table's arrays are
    copied into larger ones as it grows, so the heap grew by them: 41 MB more at 600,000 titles (BENCHMARKS.md).
    Setting the threshold also keeps glibc from raising it.
    """
    try:
        return bool(ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):  # no C library to load, or one without mallopt
        return False


def give_back_free_memory() -> bool:
    """Return the heap's free pages to the system (``malloc_trim``); False where the C library has no such call.

    Blocks under the mapping threshold come from the heap, and pages freed between blocks still in use stay
    resident until trimmed. Building the title index from a loaded topic frees many such blocks at once (numpy's
    sorts and ``unique`` allocate below the threshold): a worker that loaded a million titles kept over 100 MB
    of them (decision 0065).
    """
    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):
        return False
