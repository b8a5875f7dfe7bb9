"""prefdiv: how preference-optimisation losses trade reward for diversity (IMDB, DPO family)."""

import os

# Never send TRL/HF telemetry. Set before transformers/trl are imported by any prefdiv module; a
# user's explicit value wins. (The Hub itself stays reachable: paper scale downloads from it. The
# demo names no Hub id, so it never contacts it.)
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _keep_freed_memory() -> None:
    """glibc's malloc serves each of a stage's large float32 buffers (a (positions × vocabulary)
    block of logits is 25 MB at demo scale) with a fresh mmap and unmaps it when freed, so every
    training step faults in and zeroes the same pages again: 1.3 s of kernel time in a demo
    `train` (2-core CPU, docs/speed.md). Serving them from the heap and keeping what was freed
    reuses the pages. Memory management only: every value computed is the same. Skipped where
    the user set glibc's own variables, and where the C library has no mallopt (not glibc)."""
    import ctypes
    import ctypes.util

    if any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ):
        return
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # glibc's <malloc.h>
    mallopt(m_mmap_threshold, 32 << 20)  # the most glibc allows on 64-bit
    mallopt(m_trim_threshold, 1 << 30)
    mallopt(m_top_pad, 64 << 20)


_keep_freed_memory()

__version__ = "0.1.0"
