"""Process-wide settings that make metanetwork passes fast on the CPU."""

from __future__ import annotations

import ctypes
import functools
import logging

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
