"""keep_freed_memory: large blocks come from the heap and stay there after they are freed."""
import ctypes
import ctypes.util

import pytest
import torch

from mvgd_core.allocator import keep_freed_memory


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                                              "fordblks", "keepcost")]


def _mallinfo() -> _MallInfo2:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("not glibc >= 2.33 (mallinfo2)")
    libc.mallinfo2.restype = _MallInfo2
    return libc.mallinfo2()


def test_freed_blocks_stay_in_the_heap_for_the_next_prediction():
    """40 MB is above glibc's largest automatic mmap threshold (32 MB): by default such a block
    is mmapped and unmapped on free, so the next one faults its pages in again."""
    _mallinfo()  # skips where the C library is not glibc >= 2.33
    assert keep_freed_memory() is True
    before = _mallinfo()
    x = torch.empty(10 << 20).fill_(1.0)  # 40 MB
    during = _mallinfo()
    assert during.hblkhd == before.hblkhd, "the block got its own mmap"
    del x
    after = _mallinfo()
    assert after.fordblks >= (40 << 20), "the freed block went back to the OS"
