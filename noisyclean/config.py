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
    signal: str = "loss+margin"
    loss_history: int = 1
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


METHODS = ("dividemix", "standard")

#: TrainConfig fields that a resumed run takes from the command line instead of the
#: checkpoint (where and how it runs, not what it computes).
RESUME_OVERRIDABLE = (
    "data", "labels", "classes", "resume", "workers", "cache_dir", "use_cache", "device",
    "amp", "channels_last", "quiet", "extra",
)


@dataclass
class TrainConfig:
    """Settings of ``noisyclean train``; each field is one CLI option of the same name.

    ``None`` means "choose automatically": ``image_size``, ``model``, ``amp`` and
    ``channels_last`` as in :class:`ScanConfig`; ``lr_drop_epoch`` at half the epochs;
    ``tau``, ``lambda_u``, ``penalty`` and ``loss_history`` from the noise rate that the
    warm-up's own mixture estimates (see ``noisyclean.train.methods.dividemix``).
    The DivideMix defaults follow the paper and its reference code at CIFAR scale.
    """

    data: Path = Path(".")
    labels: Path | None = None
    classes: list[str] | None = None
    out: Path = Path("noisyclean-train")
    method: str = "dividemix"
    resume: Path | None = None
    val: Path | None = None
    truth: Path | None = None

    # decoding
    image_size: int | None = None
    workers: int | None = None
    cache_dir: Path | None = None
    use_cache: bool = True

    # networks and optimiser
    model: str | None = None
    weights: str | None = None
    width: int = 24
    epochs: int = 100
    warmup_epochs: int = 10
    batch_size: int = 64
    lr: float = 0.02
    lr_drop_epoch: int | None = None
    momentum: float = 0.9
    weight_decay: float = 5e-4
    penalty: bool | None = None

    # DivideMix
    tau: float | None = None
    lambda_u: float | None = None
    lambda_r: float = 1.0
    temperature: float = 0.5
    alpha: float = 4.0
    augmentations: int = 2
    rampup_epochs: int = 16
    loss_history: int | None = None
    mixture: str = "gmm"

    # the final table (as scan)
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

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_json` (unknown keys are ignored)."""
        paths = {"data", "labels", "out", "resume", "val", "truth", "cache_dir"}
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {
            key: (Path(value) if key in paths and value is not None else value)
            for key, value in values.items()
            if key in known
        }
        return cls(**kwargs)
