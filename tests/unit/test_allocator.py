"""The worker's allocator settings: freed memory goes back to the system (glibc; run here on Linux)."""

from __future__ import annotations

import subprocess
import sys

# 200 blocks of 1 MB, every other one freed: the title table's arrays and their copies, freed as the table grows,
# among blocks still in use. Prints the resident memory (MB) left.
CHURN = """
import sys
from stream_app.allocator import fix_mmap_threshold
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
del bytearray(30 << 20)[:]  # a mapped block freed: glibc raises its threshold to its size (up to 32 MB)
blocks = [bytearray(1 << 20) for _ in range(200)]
del blocks[::2]
rss = next(line for line in open("/proc/self/status") if line.startswith("VmRSS"))
print(int(rss.split()[1]) // 1024)
"""


def test_the_worker_gives_freed_large_blocks_back_to_the_system() -> None:
    def resident_mb(mode: str) -> int:
        run = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True)
        return int(run.stdout)

    default, fixed = resident_mb("default"), resident_mb("fixed")
    # On the heap, the 100 MB freed stays resident between the blocks still in use; mapped, it is given back.
    assert fixed < default - 80, (default, fixed)


# 3,000 blocks of 64 KB, under the mapping threshold, so on the heap; every other one freed among blocks still in use.
# Prints the resident memory (MB) before and after the trim, and what the call said.
HOLES = """
from stream_app.allocator import fix_mmap_threshold, give_back_free_memory
assert fix_mmap_threshold()
blocks = [bytearray(64 << 10) for _ in range(3000)]
del blocks[::2]
def rss():
    line = next(line for line in open("/proc/self/status") if line.startswith("VmRSS"))
    return int(line.split()[1]) // 1024
before = rss()
given = give_back_free_memory()
print(before, rss(), given)
"""


def test_freed_heap_pages_between_blocks_in_use_go_back_to_the_system() -> None:
    run = subprocess.run([sys.executable, "-c", HOLES], capture_output=True, text=True, check=True)
    before, after, given = run.stdout.split()
    # About 94 MB of the 188 MB allocated were freed, in holes the heap cannot shrink past.
    assert given == "True"
    assert int(after) < int(before) - 60, (before, after)
