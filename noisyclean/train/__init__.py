"""Training: the one loop (:mod:`.loop`), its methods (:mod:`.methods`), checkpoints, and
``train`` (:mod:`.run`), what ``noisyclean train`` does: ``from noisyclean.train import
train``."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:  # lazy: run.py imports scanning.py, which imports .loop
    if name in ("train", "TrainResult"):
        from . import run

        return getattr(run, name)
    raise AttributeError(name)
