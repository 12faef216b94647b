"""Checkpoints of the training loop: everything needed to continue a run exactly where it
stopped, in one file that ``torch.load(path, weights_only=True)`` reads.

A checkpoint holds, after a completed epoch: every network's ``state_dict`` (weights and
batch-norm statistics), every optimiser's ``state_dict`` (momentum buffers), the step
counters, the float16 gradient scaler's scale (where training runs in float16), the
method's state (its random generator and the choices it made), the global random states
(torch CPU and CUDA, numpy's legacy generator, as tensors), the per-epoch history and the
settings. It is written to a temporary file and renamed over ``checkpoint.pt``, so a run
killed at any moment leaves the last complete epoch's file.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import NoisyCleanError
from ..outputs.write import atomic_write_bytes
from ..torchfile import load_torch_file, on_cpu
from .loop import Learner

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = 1


def rng_state() -> dict[str, Any]:
    """The global random states as plain tensors and numbers."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` (the CUDA states only where CUDA is in use)."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    if "cuda" in state and torch.cuda.is_available():
        states = state["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def save_checkpoint(
    path: Path,
    epochs_done: int,
    learners: list[Learner],
    method_state: dict[str, Any],
    history: list[dict[str, Any]],
    extra: dict[str, Any],
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    """Write a checkpoint atomically.

    Args:
        path: the checkpoint file.
        epochs_done: number of completed epochs (the resumed run starts at this epoch).
        learners: the networks with their optimisers and step counters.
        method_state: the method's ``state_dict()``.
        history: one dict per completed epoch (numbers, strings, None).
        extra: anything else plain (settings, data fingerprint).
        scaler: the float16 gradient scaler, where there is one.
    """
    payload = {
        "format": FORMAT,
        "epochs_done": int(epochs_done),
        "models": [learner.model.state_dict() for learner in learners],
        "optimizers": [learner.optimizer.state_dict() for learner in learners],
        "steps": [int(learner.step) for learner in learners],
        "scaler": scaler.state_dict() if scaler is not None else None,
        "method": method_state,
        "rng": rng_state(),
        "history": history,
        "extra": extra,
    }
    buffer = io.BytesIO()
    torch.save(on_cpu(payload), buffer)  # readable without a GPU
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on the CPU).

    Raises:
        NoisyCleanError: when the file is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise NoisyCleanError(f"no {CHECKPOINT_NAME} in {path.parent}: nothing to resume")
    payload = load_torch_file(path, "checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise NoisyCleanError(f"{path} is not a noisyclean training checkpoint")
    return payload


def restore_learners(learners: list[Learner], payload: dict[str, Any]) -> None:
    """Load the networks, optimisers and step counters of a checkpoint into ``learners``."""
    if len(payload["models"]) != len(learners):
        raise NoisyCleanError(
            f"the checkpoint holds {len(payload['models'])} network(s), this run trains "
            f"{len(learners)}"
        )
    for learner, weights, optimizer, step in zip(
        learners, payload["models"], payload["optimizers"], payload["steps"], strict=True
    ):
        try:
            learner.model.load_state_dict(weights)
        except RuntimeError as error:  # another network, or one of an older noisyclean
            lines = str(error).splitlines() or [""]
            first = lines[1].strip() if len(lines) > 1 else lines[0]
            raise NoisyCleanError(
                f"the checkpoint's networks do not match the one this run builds ({first}); "
                f"it was saved with other --model/--width settings or by an older noisyclean "
                f"whose small-cnn had no PooledNorm: start a new run"
            ) from None
        learner.optimizer.load_state_dict(optimizer)
        learner.step = int(step)


def restore_scaler(scaler: torch.amp.GradScaler | None, payload: dict[str, Any]) -> None:
    """Give ``scaler`` the scale a checkpoint kept. Nothing happens where this run has no
    scaler or the checkpoint none (it trained in another precision: the scaler starts
    anew)."""
    state = payload.get("scaler")
    if scaler is not None and state:
        scaler.load_state_dict(state)
