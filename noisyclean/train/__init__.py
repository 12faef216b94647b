"""Training: the one loop (:mod:`.loop`), its methods (:mod:`.methods`), checkpoints, and
``train`` (:mod:`.run`), what ``noisyclean train`` does: ``from noisyclean.train import
train, TrainConfig``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from ..config import TrainConfig as TrainConfig
    from .run import TrainResult as TrainResult
    from .run import train as train


def __getattr__(name: str) -> Any:  # lazy: run.py imports scanning.py, which imports .loop
    if name in ("train", "TrainResult"):
        from . import run

        return getattr(run, name)
    if name == "TrainConfig":  # beside train, as ScanConfig is beside scan
        from ..config import TrainConfig

        return TrainConfig
    raise AttributeError(name)
