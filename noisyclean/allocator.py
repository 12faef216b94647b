"""The C library's memory allocator during a run: glibc's ``malloc`` told to keep the memory
a training step frees, so that the next step reuses it instead of asking the kernel again.

A training step allocates and frees blocks of hundreds of kilobytes to tens of megabytes
(activations, their gradients, the convolutions' workspaces). By default glibc returns
such blocks to the kernel as soon as they are freed (blocks it had mapped with ``mmap``,
and free memory at the top of its heap beyond a *trim threshold*), and the next step's
blocks start as fresh pages that the kernel must fault in and zero. On the machine the
benchmarks ran on (a virtual machine, 2 cores) the default scan of 10,000 images took
6-12 million page faults and 12-23 s of system time in 60-68 s; with the two settings
below, 0.19 million, 1.3 s and 50-55 s, with every output byte for byte the same
(``benchmarks/RESULTS.md``, "Page faults"). PyTorch's CPU performance guide gives the same
advice in the form of another allocator (jemalloc or tcmalloc), which is more than a
``pip`` install can bring.

:func:`hold_freed_memory` sets, with ``mallopt``:

* ``M_MMAP_THRESHOLD`` to 32 MiB (the most glibc accepts on a 64-bit system), so that
  blocks below it come from the heap, where a freed block can be reused;
* ``M_TRIM_THRESHOLD`` to 2 GiB, so that freed memory stays with the process.

The cost: the process keeps the memory it frees, up to its peak (the default scan's peak
resident memory went from 1.00-1.02 to 1.07-1.09 GiB). Blocks of more than 32 MiB (a
large network's activations at 224 px) are still mapped and unmapped each time.

The CLI calls it first thing. The Python API (``noisyclean.scan``, ``noisyclean.train``)
does not, since it would change the caller's process for the rest of its life; call it
there yourself to get the same speed.

Nothing is changed where the user has chosen: ``NOISYCLEAN_MALLOC=default``, glibc's own
``MALLOC_*_`` variables or ``glibc.malloc`` tunables in ``GLIBC_TUNABLES``, or another
allocator in ``LD_PRELOAD``; nor on systems without glibc (macOS, Windows, musl).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping

#: ``mallopt`` parameters (glibc's ``malloc.h``).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: The values :func:`hold_freed_memory` sets: the largest mmap threshold glibc accepts on a
#: 64-bit system, and a trim threshold of 2 GiB (``mallopt`` takes an ``int``).
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 2**31 - 1
#: The environment variable that leaves the allocator as it is, with the value ``default``.
OPT_OUT = "NOISYCLEAN_MALLOC"
#: glibc's own settings of what :func:`hold_freed_memory` would set: environment variables
#: and tunables (``GLIBC_TUNABLES=glibc.malloc.trim_threshold=...``).
GLIBC_VARIABLES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_",
                   "MALLOC_MMAP_MAX_")
GLIBC_TUNABLES = ("glibc.malloc.trim_threshold", "glibc.malloc.mmap_threshold",
                  "glibc.malloc.top_pad", "glibc.malloc.mmap_max")
#: Other allocators a user may preload.
OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc", "hoard")

_state = "default"


def glibc_version() -> str | None:
    """glibc's version (``"2.36"``), or None where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        name, _, version = os.confstr("CS_GNU_LIBC_VERSION").partition(" ")
    except (AttributeError, ValueError, OSError):
        return None
    return version if name == "glibc" and version else None


def user_choice(environ: Mapping[str, str] | None = None) -> str | None:
    """What in the environment says the user chose the allocator's settings themselves
    (a short phrase), or None."""
    env = os.environ if environ is None else environ
    if env.get(OPT_OUT, "").strip().lower() == "default":
        return f"{OPT_OUT}=default"
    given = [name for name in GLIBC_VARIABLES if name in env]
    if given:
        return given[0]
    tunables = env.get("GLIBC_TUNABLES", "")
    if any(name in tunables for name in GLIBC_TUNABLES):
        return "GLIBC_TUNABLES"
    preload = env.get("LD_PRELOAD", "").lower()
    other = [name for name in OTHER_ALLOCATORS if name in preload]
    if other:
        return f"{other[0]} in LD_PRELOAD"
    return None


def hold_freed_memory() -> str:
    """Keep the memory the process frees for its next allocations (glibc only; see the
    module docstring), unless the user chose the allocator's settings. Safe to call more
    than once.

    Returns:
        What the allocator runs with, as :func:`malloc_state` then says it.
    """
    global _state
    if _state.startswith("held"):
        return _state
    chosen = user_choice()
    version = glibc_version()
    if chosen is not None:
        _state = f"default ({chosen})"
    elif version is None:
        _state = "default (not glibc)"
    else:
        mallopt = ctypes.CDLL(None).mallopt
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        # mallopt returns 1 on success; both are within glibc's bounds on 64-bit systems
        done = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD,
                                                                     TRIM_THRESHOLD)
        _state = ("held (glibc mallopt: mmap threshold 32 MiB, trim threshold 2 GiB)" if done
                  else "default (glibc refused mallopt)")
    return _state


def malloc_state() -> str:
    """How the allocator runs in this process, as ``summary.json`` records it: ``held
    (...)`` after :func:`hold_freed_memory` set it, else ``default`` with the reason."""
    return _state
