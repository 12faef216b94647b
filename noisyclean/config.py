"""Every setting of a scan in one dataclass, with its default.

The CLI builds a :class:`ScanConfig` from its options and calls :func:`noisyclean.scan.scan`;
library users build the same object. ``asdict(config)`` is saved into ``summary.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MIXTURES = ("gmm", "bmm")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass
class ScanConfig:
    """Settings of ``noisyclean scan``; each field is one CLI option of the same name.

    ``None`` means "choose automatically" for ``image_size``, ``model``, ``epochs``,
    ``amp`` and ``channels_last`` (see :func:`resolve_auto` in ``scan.py``).
    """

    data: Path = Path(".")
    labels: Path | None = None
    classes: list[str] | None = None
    out: Path = Path("noisyclean-out")

    # decoding
    image_size: int | None = None
    workers: int | None = None
    cache_dir: Path | None = None
    use_cache: bool = True

    # warm-up network
    model: str | None = None
    weights: str | None = None
    width: int = 24
    networks: int = 1
    epochs: int | None = None
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    penalty: bool = False
    augment: bool = True

    # signals and mixture
    loss_history: int = 5
    mixture: str = "gmm"
    threshold: float = 0.5
    relabel_threshold: float = 0.7
    tta: bool = True

    # execution
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None
    channels_last: bool | None = None
    quiet: bool = False

    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the settings as JSON-serialisable plain values (paths as strings)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, Path):
                out[key] = str(value)
        return out
