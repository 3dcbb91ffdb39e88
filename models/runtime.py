"""Process-wide settings that make metanetwork passes fast on the CPU."""

from __future__ import annotations

import ctypes
import functools
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_KEEP_BYTES = 1 << 30


@functools.cache
def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse instead of handing it back to the OS.

    A message pass allocates and frees tensors of several MB at every op (messages of
    ``2E x hidden`` floats). glibc serves blocks that large with a fresh ``mmap`` and
    returns them with ``munmap``, so every op page-faults its whole output in anew: that
    was ~40% of a CPU forward pass of the edge-list path (README). With both thresholds
    at 1 GiB, freed blocks stay in the heap and the next op reuses them; the price is that
    the process keeps its peak heap resident. Returns whether glibc took the settings
    (False on other C libraries, where nothing changes).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    taken = all(
        mallopt(ctypes.c_int(option), ctypes.c_int(_KEEP_BYTES)) == 1
        for option in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD)
    )
    if not taken:
        log.info("mallopt refused the thresholds; freed memory goes back to the OS")
    return taken


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _single_threaded(fn: Callable[[T], R], grad: bool, inference: bool, item: T) -> R:
    torch.set_num_threads(1)  # this pool thread's own OpenMP/MKL setting
    # grad and inference modes are thread-local: take the caller's
    with torch.inference_mode(inference), torch.set_grad_enabled(grad):
        return fn(item)


def map_threads(fn: Callable[[T], R], items: Sequence[T], threads: int) -> list[R]:
    """``[fn(x) for x in items]`` on ``threads`` pool threads, each running torch ops on
    one intra-op thread; the caller's thread count is restored afterwards.

    For inference on independent sub-batches: a metanetwork pass is thousands of small ops,
    and an intra-op team of threads meets at a barrier after every one of them, so on a
    shared machine each op waits for whichever thread was descheduled (two intra-op
    threads ran slower than one in bench/metanet_speed). Independent threads never wait
    for each other; torch releases the GIL inside its ops. The caller's grad and inference
    modes hold in the pool threads (autocast does not: CPU float32 only).
    """
    if threads <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with _POOLS_LOCK:
        pool = _POOLS.get(threads)
        if pool is None:
            pool = _POOLS[threads] = ThreadPoolExecutor(threads, "metanet-infer")
    before = torch.get_num_threads()
    try:
        task = functools.partial(_single_threaded, fn, torch.is_grad_enabled(),
                                 torch.is_inference_mode_enabled())
        return list(pool.map(task, items))
    finally:
        torch.set_num_threads(before)  # the process-wide default new threads start from
