"""noisyclean: find and fix wrong labels in image datasets.

``noisyclean.scan(ScanConfig(data=...))`` does what ``noisyclean scan`` does, and
``noisyclean.train.train(TrainConfig(data=...))`` what ``noisyclean train`` does.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["ScanConfig", "TrainConfig", "NoisyCleanError", "hold_freed_memory", "scan",
           "__version__"]

from typing import TYPE_CHECKING  # noqa: E402

from .allocator import hold_freed_memory  # noqa: E402
from .config import ScanConfig, TrainConfig  # noqa: E402
from .errors import NoisyCleanError  # noqa: E402

if TYPE_CHECKING:  # what the lazy name is, for type checkers and editors
    from .scanning import scan as scan


def __getattr__(name: str):  # lazy: importing torch is slow and the CLI's --help needs none
    if name == "scan":
        from .scanning import scan

        return scan
    raise AttributeError(name)


def __dir__() -> list[str]:  # the lazy names too, for tab completion
    return sorted({*globals(), *__all__})
