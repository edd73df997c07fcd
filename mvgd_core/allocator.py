"""Keep freed host memory in the process for the next prediction (glibc malloc settings).

Why: each depth map allocates and frees the same few-MB tensors again (at 8 views the cost
volume's warped features alone are 7 MB). glibc serves blocks above its mmap threshold with
fresh pages and hands them back to the OS on free, so every prediction pays those page faults
again; torch's CPU allocator keeps no cache of its own. PyTorch's CPU performance guide
recommends jemalloc or tcmalloc for this; a robot's image may have neither, and glibc's own
settings (mallopt) give the same effect: through the node at 8 views on 2 CPU cores p50 60-93 ms
against 90-122 ms (BENCHMARKS.md "Freed memory kept for the next prediction (stop 32)").

Cost: the process keeps its peak heap instead of returning it to the OS (RSS stays at its
high-water mark, which the node's peak RSS already is). Process-wide, so only entry points that
own their process call it (the node, its benchmarks, the training and evaluation scripts), never
library code.
"""
from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameter numbers (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3


def keep_freed_memory(mmap_threshold_mb: int = 1024, top_pad_mb: int = 64) -> bool:
    """Serve blocks below mmap_threshold_mb from the heap and never trim it back; grow it
    top_pad_mb at a time. Returns False where the C library is not glibc (nothing changed)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # glibc only: other C libraries' mallopt numbers differ
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    cap = mmap_threshold_mb << 20
    # mallopt returns 1 on success; glibc versions that cap the mmap threshold at 32 MiB (64-bit)
    # refuse larger values: then take that cap.
    ok = mallopt(M_MMAP_THRESHOLD, cap) == 1 or mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1
    ok &= mallopt(M_TRIM_THRESHOLD, cap) == 1
    ok &= mallopt(M_TOP_PAD, top_pad_mb << 20) == 1
    return bool(ok)
