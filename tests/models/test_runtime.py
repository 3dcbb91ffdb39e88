"""The allocator setting that keeps a CPU message pass from page-faulting every op's output."""

from __future__ import annotations

import ctypes
import platform

import pytest

from models.runtime import keep_freed_memory


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_glibc_takes_the_thresholds_and_a_large_block_is_reused() -> None:
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # once per process; asking again changes nothing
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 16 << 20  # above glibc's default mmap threshold: without the setting, an mmap
    first = libc.malloc(size)
    libc.free(first)
    second = libc.malloc(size)
    libc.free(second)
    assert first == second  # served again from the heap, not unmapped and mapped anew


def test_map_threads_keeps_order_modes_and_the_callers_thread_count() -> None:
    import torch

    from models.runtime import map_threads

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.inference_mode():
            got = map_threads(
                lambda i: (i, torch.is_inference_mode_enabled(), torch.get_num_threads()),
                list(range(5)), 2)
        assert got == [(i, True, 1) for i in range(5)]
        got = map_threads(lambda i: torch.is_grad_enabled(), [0, 1], 2)
        assert got == [True, True]
        with torch.no_grad():
            assert map_threads(lambda i: torch.is_grad_enabled(), [0, 1], 2) == [False, False]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
