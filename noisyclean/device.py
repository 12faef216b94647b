"""Choosing the compute device."""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from .config import DEVICES, MAX_THREADS
from .errors import NoisyCleanError, count_text


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA, then MPS, then CPU; an explicit device must be available."""
    if re.fullmatch(r"cuda:\d+", name.strip()):
        index = name.strip().partition(":")[2]
        raise NoisyCleanError(
            f"--device {name}: pick the GPU with CUDA_VISIBLE_DEVICES={index} and --device cuda "
            "(noisyclean uses the first GPU it sees)"
        )
    if name not in DEVICES:
        raise NoisyCleanError(f"--device must be one of {', '.join(DEVICES)}, not {name!r}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise NoisyCleanError("--device cuda: no CUDA device is available (try --device auto)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise NoisyCleanError("--device mps: MPS is not available (try --device auto)")
    return torch.device(name)


@contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` intra-op CPU threads in torch (``None``: leave torch's
    own count, the number of cores or ``OMP_NUM_THREADS``), and restore the previous count
    afterwards.

    The thread count decides the order in which the CPU adds up a reduction, so a seeded
    CPU run gives the same scores only at the same count: one thread or two are two
    different runs, as two seeds are.

    Raises:
        NoisyCleanError: for a count below 1 or above :data:`~noisyclean.config.MAX_THREADS`.
    """
    if threads is None:
        yield
        return
    if not 1 <= threads <= MAX_THREADS:
        raise NoisyCleanError(f"--threads must be between 1 and {MAX_THREADS}, not {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def library_run(threads: int | None) -> Iterator[None]:
    """Run a scan or a training (the library's entry points) as the CLI would, whatever
    the caller's torch and numpy state, and leave that state as it was: ``threads`` intra-op
    threads (:func:`cpu_threads`), float32 as torch's default dtype (a notebook's
    ``torch.set_default_dtype(torch.float64)`` made the networks' weights float64 and the
    first batch fail), gradients on (a caller's ``torch.no_grad()`` made training fail),
    and the global random states of torch and numpy saved and restored (the run seeds
    them for its networks' initial weights; the caller's own streams go on as if the run
    had not happened).

    Raises:
        NoisyCleanError: for a thread count below 1.
    """
    dtype = torch.get_default_dtype()
    numpy_state = np.random.get_state()
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    with cpu_threads(threads), torch.random.fork_rng(devices=[], enabled=True), \
            torch.enable_grad():
        cuda_states = torch.cuda.get_rng_state_all() if cuda else None
        torch.set_default_dtype(torch.float32)
        try:
            yield
        finally:
            torch.set_default_dtype(dtype)
            np.random.set_state(numpy_state)
            if cuda_states is not None:
                torch.cuda.set_rng_state_all(cuda_states)


def device_text(device: torch.device, dtype: torch.dtype | None = None) -> str:
    """Where a run computes, as its first log line says it: the device, then in brackets
    its autocast precision (when there is one) and, on the CPU, torch's thread count (a
    seeded CPU run reproduces only at the same count), e.g. ``cpu (2 threads)`` or
    ``cuda (torch.bfloat16)``."""
    details = [str(dtype)] if dtype else []
    if device.type == "cpu":
        count = torch.get_num_threads()
        details.append(count_text(count, "thread"))
    return str(device) + (f" ({', '.join(details)})" if details else "")


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity, where the system says)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


def threads_warning(device: torch.device) -> str | None:
    """The warning for a CPU run with more torch threads than cores (``--threads`` or
    ``OMP_NUM_THREADS`` set too high): the threads then wait on one another at every
    operator, and a run takes several times as long. None where there is nothing to say."""
    threads, cores = torch.get_num_threads(), available_cores()
    if device.type != "cpu" or threads <= cores:
        return None
    return (f"torch runs {threads} threads on {count_text(cores, 'core')}: they wait on one "
            f"another and the run is much slower; --threads {cores} or fewer")


#: CPU feature flags (``/proc/cpuinfo``) of native bfloat16 arithmetic: Intel AMX and
#: AVX512-BF16 (Cooper Lake, Sapphire Rapids and later; AMD Zen 4 and later).
BF16_CPU_FLAGS: tuple[str, ...] = ("amx_bf16", "avx512_bf16")


def _cpuinfo_field(name: str, cpuinfo: str) -> str | None:
    """The value of the first ``name`` line of a Linux ``/proc/cpuinfo``-style file (None
    where the file or the line is missing)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(name):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return None


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags as Linux lists them (empty where that file is missing)."""
    return set((_cpuinfo_field("flags", cpuinfo) or "").split())


def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name (Linux's ``model name``; else :func:`platform.processor`, which
    is empty on Linux, or the machine type)."""
    return (_cpuinfo_field("model name", cpuinfo)
            or platform.processor() or platform.machine())


def cpu_has_native_bf16(flags: set[str] | None = None) -> bool:
    """Whether this CPU computes in bfloat16 natively (AMX or AVX512-BF16).

    There, bfloat16 autocast and channels-last batches train the small CNN about twice as
    fast as float32 (measured on 2 Xeon cores with AMX: a 15-epoch warm-up on 5,000 32-px
    images took 37 s against 72 s). Elsewhere bfloat16 is emulated and slower, so the CPU
    default stays float32.

    Args:
        flags: the CPU's feature flags (default: :func:`cpu_flags`).
    """
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in BF16_CPU_FLAGS)
