"""The C library's memory allocator during a run: glibc's ``malloc`` told to keep the memory
a training step frees, so that the next step reuses it instead of asking the kernel again.

A training step allocates and frees blocks of hundreds of kilobytes to tens of megabytes
(activations, their gradients, the convolutions' workspaces). By default glibc returns
much of that to the kernel when it is freed: blocks above its *mmap threshold*, which it
maps with ``mmap`` and unmaps on ``free``, and free memory at the top of its heap beyond
its *trim threshold*. Both thresholds start low and rise with the largest blocks freed so
far, so how much goes back depends on what the process allocated before. What went back,
the next step takes again as fresh pages that the kernel must fault in and zero. On the
machine the benchmarks ran on (a virtual machine, 2 cores) the default scan of 10,000
images took 6-12 million page faults and 12-23 s of system time in 60-68 s; with the two
settings below, 0.19 million, 1.3 s and 50-55 s, with every output byte for byte the same
(``benchmarks/RESULTS.md``, "Page faults"). PyTorch's CPU performance guide gives the same
advice in the form of another allocator (jemalloc or tcmalloc), which is more than a
``pip`` install can bring.

:func:`hold_freed_memory` sets, with ``mallopt``:

* ``M_MMAP_THRESHOLD`` to 32 MiB (the most glibc accepts on a 64-bit system), so that
  blocks below it come from the heap, where a freed block can be reused;
* ``M_TRIM_THRESHOLD`` to 2 GiB, so that freed memory stays with the process.

The two go together: either alone turns off glibc's rising thresholds and is worse than
its defaults (the trim threshold alone took five times the default's page faults).

The cost: the process keeps the memory it frees, up to its peak. The default scan's peak
resident memory went from 1.00-1.02 to 1.07-1.09 GiB; a scan of large JPEGs decoded by
8 threads kept about 0.25 GiB more than with glibc's defaults, each decoding thread's heap
holding its own peak. Blocks of more than 32 MiB (a large network's activations at 224
px) are still mapped and unmapped each time. Where memory is tight,
``NOISYCLEAN_MALLOC=default`` leaves glibc's defaults. On a system whose transparent huge
pages are ``always`` on, glibc's defaults fault far less and there is less to gain (the
figures above are with ``madvise``).

The CLI calls it first thing. The Python API (``noisyclean.scan``, ``noisyclean.train``)
does not, since it would change the caller's process for the rest of its life; call it
there yourself to get the same speed.

Nothing is changed where the user has chosen: ``NOISYCLEAN_MALLOC`` set to anything but
``held`` (``default``, say), any of glibc's ``MALLOC_*`` variables (``MALLOC_ARENA_MAX``
included) or ``glibc.malloc`` tunables in ``GLIBC_TUNABLES``, or another allocator in
``LD_PRELOAD``; nor on systems without glibc (macOS, Windows, musl). The environment is
read when :func:`hold_freed_memory` is called; glibc itself reads its variables when the
process starts, so one set later from Python only opts out here.
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
#: The environment variable that leaves the allocator as it is: any value but ``held``
#: (``default``, say); unset, empty or ``held``, :func:`hold_freed_memory` sets it.
OPT_OUT = "NOISYCLEAN_MALLOC"
#: The prefix of glibc's malloc variables (``MALLOC_ARENA_MAX``, ``MALLOC_TRIM_THRESHOLD_``,
#: ``MALLOC_CHECK_``, ...) and of its malloc tunables (``GLIBC_TUNABLES=glibc.malloc.X=...``):
#: a user who set one chose the allocator's settings.
GLIBC_VARIABLE_PREFIX = "MALLOC_"
GLIBC_TUNABLE_PREFIX = "glibc.malloc."
#: Other allocators a user may preload (matched in the names of ``LD_PRELOAD``'s files).
OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc", "hoard", "snmalloc", "rpmalloc")

_state = "default (hold_freed_memory not called)"


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
    value = env.get(OPT_OUT, "").strip()
    if value and value.lower() != "held":
        return f"{OPT_OUT}={value}"
    given = sorted(name for name in env if name.startswith(GLIBC_VARIABLE_PREFIX))
    if given:
        return given[0]
    tunables = env.get("GLIBC_TUNABLES", "").split(":")
    if any(tunable.strip().startswith(GLIBC_TUNABLE_PREFIX) for tunable in tunables):
        return "GLIBC_TUNABLES"
    # LD_PRELOAD's entries are separated by spaces or colons; the allocator is in the name
    files = [os.path.basename(entry).lower()
             for entry in env.get("LD_PRELOAD", "").replace(":", " ").split()]
    other = [name for name in OTHER_ALLOCATORS if any(name in file for file in files)]
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
    if _state.startswith(("held", "partial")):
        return _state
    chosen = user_choice()
    version = glibc_version()
    if chosen is not None:
        _state = f"default ({chosen})"
    elif version is None:
        _state = "default (not glibc)"
    else:
        _state = _set_thresholds()
    return _state


def _set_thresholds() -> str:
    """Both ``mallopt`` settings (the state :func:`hold_freed_memory` records). The two go
    together: where glibc refuses the first, the second is not asked for."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    except (AttributeError, OSError, TypeError):
        return "default (no mallopt)"
    # mallopt returns 1 on success; both values are within glibc's bounds on 64-bit systems
    if not mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD):
        return "default (glibc refused mallopt)"
    if not mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD):
        return "partial (glibc mallopt: mmap threshold 32 MiB; the trim threshold refused)"
    return "held (glibc mallopt: mmap threshold 32 MiB, trim threshold 2 GiB)"


def malloc_state() -> str:
    """How the allocator runs in this process, as ``summary.json`` records it: ``held
    (...)`` after :func:`hold_freed_memory` set it, else ``default (...)`` with the reason
    (``hold_freed_memory not called`` in a Python process that did not call it)."""
    return _state
