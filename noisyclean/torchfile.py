"""Reading a file written by ``torch.save`` (a ``--weights`` file, a training checkpoint)
safely, with one plain line for the user when it cannot be read."""

from __future__ import annotations

import errno
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from .errors import NoisyCleanError


def _starts_like_torch_save(path: Path) -> bool:
    """Whether the file begins as ``torch.save`` writes: a zip archive (``PK``), or a
    pickle of protocol 2 or later (the legacy format)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(2)
    except OSError:
        return True  # no better answer than the loader's own
    return head == b"PK" or (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def load_torch_file(path: Path, what: str) -> Any:
    """``torch.load`` of ``path`` with ``weights_only=True`` (tensors and plain values
    only: a file cannot run code) onto the CPU.

    Args:
        path: the file.
        what: how messages call it (``weights file``, ``checkpoint``).

    Returns:
        What the file holds.

    Raises:
        NoisyCleanError: one line saying why the file cannot be read (empty, truncated,
            not written by ``torch.save``, holding other objects), not torch's own
            several-paragraph advice; torch's warnings about the file are not shown.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except IsADirectoryError:
        raise NoisyCleanError(f"cannot read {what} {path}: it is a folder") from None
    except OSError as error:
        reason = error.strerror or str(error)
        if error.errno == errno.EINVAL and Path(path).is_file():
            # torch's archive reader seeking past the end of a file cut short
            reason = f"it is cut short or damaged ({reason})"
        raise NoisyCleanError(f"cannot read {what} {path}: {reason}") from None
    except EOFError:
        raise NoisyCleanError(f"cannot read {what} {path}: the file is empty or cut "
                              "short") from None
    except pickle.UnpicklingError:
        raise NoisyCleanError(
            f"cannot read {what} {path}: it is not a file written by torch.save, or it holds "
            "objects other than tensors and plain values, which noisyclean does not load "
            "(a file could run code)") from None
    except Exception as error:  # a truncated archive, another format
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        reason = ("it is cut short or not a file written by torch.save"
                  if "zip archive" in first or not first else first)
        if not _starts_like_torch_save(Path(path)):  # text, an image: pickle's own error
            reason = "it is not a file written by torch.save"
        raise NoisyCleanError(f"cannot read {what} {path}: {reason}") from None


def on_cpu(obj: Any) -> Any:
    """``obj`` with every tensor in it (through dicts, lists and tuples) detached and copied
    to the CPU, so that a file saved from a GPU run reads on a machine without one with a
    plain ``torch.load``; a state dict keeps its ``_metadata`` (the layers' versions)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        out = obj.copy()
        for key, value in obj.items():
            out[key] = on_cpu(value)
        metadata = getattr(obj, "_metadata", None)
        if metadata is not None:
            out._metadata = metadata
        return out
    if isinstance(obj, (list, tuple)):
        values = [on_cpu(value) for value in obj]
        return values if isinstance(obj, list) else tuple(values)
    return obj
