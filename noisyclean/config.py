"""Every setting of a scan in one dataclass, with its default.

The CLI builds a :class:`ScanConfig` from its options and calls :func:`noisyclean.scanning.scan`;
library users build the same object. ``asdict(config)`` is saved into ``summary.json``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeAlias

from .errors import NoisyCleanError, is_int, is_number
from .names import is_utf8, printable

#: A path setting: a string or a :class:`pathlib.Path` (or any ``os.PathLike``).
PathLike: TypeAlias = "str | os.PathLike[str]"

MIXTURES = ("gmm", "bmm")
DEVICES = ("auto", "cpu", "cuda", "mps")
RESIZE_MODES: tuple[str, ...] = ("crop", "pad", "squash")
"""How an image becomes a square (``--resize``): ``crop`` scales the shorter side to the
square's and keeps the centre square (what CIFAR-style training does; an elongated image
loses its ends); ``pad`` scales the longer side to the square's and fills the rest with
black (all of the image, smaller); ``squash`` scales each side to the square's (all of the
image, its proportions changed)."""
#: The largest ``--seed``: numpy's and scikit-learn's random states (the mixtures, the
#: folds) take a seed in 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1


@dataclass
class DataSettings:
    """The settings ``scan`` and ``train`` share: where the images are, how they are decoded,
    and where and how the run executes. ``None`` means "choose automatically" for
    ``image_size``, ``workers``, ``cache_dir``, ``amp`` and ``channels_last``, and "torch's
    own count" for ``threads`` (the CPU threads that train and score)."""

    #: the image folder; it must be given (None is refused when a run starts)
    data: PathLike | None = None
    labels: PathLike | None = None
    classes: list[str] | None = None

    # decoding
    image_size: int | None = None
    #: how each image becomes a square: crop, pad or squash (:data:`RESIZE_MODES`)
    resize: str = "crop"
    workers: int | None = None
    cache_dir: PathLike | None = None
    use_cache: bool = True

    # execution
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None
    channels_last: bool | None = None
    threads: int | None = None
    quiet: bool = False

    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the settings as JSON-serialisable plain values (paths as strings)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, Path):
                out[key] = str(value)
        return out


#: ``scan --correction`` values: forward loss correction in the warm-up's last epochs by the
#: estimated systematic flips (``forward``), by those flips plus part of the spread-out
#: noise (``forward+background``), or none.
CORRECTIONS: tuple[str, ...] = ("forward", "forward+background", "none")

#: ``scan --late-loss`` values: the loss of the warm-up's second half. ``auto``: the
#: generalized cross-entropy when the network's own estimate of the noise rate is high
#: (:data:`LATE_GCE_MIN_RATE`), else the cross-entropy. The default is ``ce``: ``auto``
#: raised F1 on CIFAR-10N worst but lowered it by 0.014 on a fresh folder with 40%
#: symmetric noise (``benchmarks/RESULTS.md``, "A robust loss in the warm-up's second half").
LATE_LOSSES: tuple[str, ...] = ("ce", "gce", "auto")
#: ``scan --resized-batches`` values, each with the batch of the warm-up's resized epochs
#: as a multiple of ``--batch-size`` (at half resolution, at three quarters). ``double``:
#: twice at half resolution only; ``pixels``: about the pixels of a full-resolution batch,
#: four times at half resolution and twice at three quarters (fewer, larger steps);
#: ``pixels-lr``: the batches of ``pixels`` with the learning rate scaled as they grow
#: (:data:`RESIZED_LR_FACTORS`).
RESIZED_BATCH_FACTORS: dict[str, tuple[int, int]] = {
    "double": (2, 1), "pixels": (4, 2), "pixels-lr": (4, 2)}
RESIZED_BATCHES: tuple[str, ...] = tuple(RESIZED_BATCH_FACTORS)
#: The learning rate of the resized epochs as a multiple of the schedule's (at half
#: resolution, at three quarters), per ``--resized-batches`` value: ``pixels-lr`` doubles
#: it where ``pixels`` doubles ``double``'s batch (the linear scaling rule of Goyal et al.
#: 2017, so that each image moves the weights about as much as in ``double``'s batches).
RESIZED_LR_FACTORS: dict[str, tuple[float, float]] = {
    "double": (1.0, 1.0), "pixels": (1.0, 1.0), "pixels-lr": (2.0, 2.0)}
#: The GCE exponent of ``--late-loss`` (the GCE paper's 0.7).
LATE_GCE_Q = 0.7
#: ``--late-loss auto`` switches to GCE when the calibrated confident joint on the
#: network's training softmax, halfway through the warm-up, estimates at least this share of
#: wrong labels. That estimate runs high (the network is half trained and sees augmented
#: images): on 10,000 CIFAR-10 images it read 0.36 with 20% class flips, 0.46 with 20%
#: symmetric noise, 0.57-0.58 on CIFAR-10N worst (41%), 0.66 with 40% and 0.74 with 50%
#: symmetric noise (``benchmarks/RESULTS.md``).
LATE_GCE_MIN_RATE = 0.5


@dataclass
class ScanConfig(DataSettings):
    """Settings of ``noisyclean scan``. The fields, with those of :class:`DataSettings`,
    are the CLI's options of the same name (``use_cache`` is ``--cache/--no-cache``), but
    for ``momentum`` and ``extra``, which only Python callers set.

    ``None`` means "choose automatically" for ``image_size``, ``model``, ``epochs``,
    ``low_res_epochs``, ``mid_res_epochs``, ``amp`` and ``channels_last``: resolved when
    the data is loaded (:func:`~noisyclean.data.load.load_configured`; the epochs by
    :func:`~noisyclean.scanning.resolve_schedule`).
    """

    out: PathLike = Path("noisyclean-out")

    # warm-up network
    model: str | None = None
    weights: str | None = None
    width: int = 24
    networks: int = 1
    epochs: int | None = None
    low_res_epochs: int | None = None
    mid_res_epochs: int | None = None
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    penalty: bool = False
    augment: bool = True
    correction: str = "forward"
    late_loss: str = "ce"
    resized_batches: str = "double"

    # signals and mixture
    signal: str = "loss+margin"
    fusion: str = "hybrid"
    loss_history: int = 1
    mixture: str = "gmm"
    threshold: float = 0.5
    cut: str = "arbitrated"
    flip_ranking: bool = True
    relabel_threshold: float = 0.7
    tta: bool = True
    folds: int = 1
    save_probs: bool = False


#: ``train --method`` values with one line each on when to use it (``train --help``).
METHOD_HELP = {
    "dividemix": "two networks, co-divide + MixMatch: the strongest, and the slowest "
    "(two networks, two augmentations per image and step); for any noise rate",
    "standard": "one network, cross-entropy: the baseline every method is measured against",
    "coteaching": "two networks, each trains on the other's small-loss samples: symmetric "
    "noise up to about 50%; two networks' compute",
    "gce": "generalized cross-entropy (between CE and MAE, --gce-q): a drop-in robust loss, "
    "standard's cost",
    "sce": "symmetric cross-entropy, CE + reverse CE: a drop-in robust loss that also helps "
    "hard classes; standard's cost",
    "mae": "mean absolute error: provably robust to symmetric noise but slow to fit; mostly "
    "a reference point",
    "bootstrap": "CE against a mix of the label and the network's own prediction (hard or "
    "soft, fixed weight): mild noise",
    "dynamic-bootstrap": "bootstrapping weighted per sample by a Beta mixture on the losses "
    "(with --mixup: M-DYR-H): high symmetric noise",
    "mixup": "trains on convex combinations of image pairs: cheap, resists memorising wrong "
    "labels; a strong simple baseline",
    "label-smoothing": "CE against smoothed labels: a mild regulariser for low noise",
}
METHODS = tuple(METHOD_HELP)

#: How ``train`` cut and ranked its final table before it had ``--cut`` and
#: ``--flip-ranking`` (noisyclean 0.1.0 until 2026-12-07): a checkpoint whose settings lack
#: them resumes with these, so that the run ends as it would have uninterrupted.
LEGACY_TABLE: dict[str, Any] = {"cut": "mixture", "flip_ranking": False}

#: TrainConfig fields that a resumed run takes from the command line instead of the
#: checkpoint (where and how it runs, not what it computes).
RESUME_OVERRIDABLE = (
    "data", "labels", "classes", "resume", "workers", "cache_dir", "use_cache", "device",
    "amp", "channels_last", "threads", "quiet", "extra",
)


def option_name(name: str) -> str:
    """The command-line option of a settings field: ``weight_decay`` -> ``--weight-decay``."""
    return "--" + name.replace("_", "-")


def changed_options(config: ScanConfig, names: tuple[str, ...],
                    explicit: Collection[str] | None = None) -> list[str]:
    """The settings among ``names`` that were asked for, as the command line writes them
    (``--mixture``; ``--no-flip-ranking`` for a switch turned off): those in ``explicit``
    (the options given on the command line, which the CLI knows, whatever their values),
    or where that is None, those that ``config`` sets to other than their defaults."""
    defaults = {f.name: f.default for f in fields(ScanConfig)}
    asked = [name for name in names if name in explicit] if explicit is not None else [
        name for name in names if getattr(config, name) != defaults[name]]
    return [option_name(name) if getattr(config, name) is not False
            else option_name(f"no_{name}") for name in asked]


def ignored_text(options: list[str], applies_to: str) -> str:
    """The warning for options given where they do nothing: ``--mixture, --cut do not
    apply to --signal aum: ignored``."""
    verb = "does" if len(options) == 1 else "do"
    return f"{', '.join(options)} {verb} not apply to {applies_to}: ignored"


#: The setting types :func:`check_setting_types` checks, by the field's annotation: what a
#: value of each must be (``True`` is neither a whole number nor a number there), in words.
_SETTING_TYPES: dict[str, tuple[Callable[[object], bool], str]] = {
    "int": (is_int, "a whole number"),
    "float": (is_number, "a number"),
    "bool": (lambda value: isinstance(value, bool), "True or False"),
    "str": (lambda value: isinstance(value, str), "a string"),
    "PathLike": (lambda value: isinstance(value, str | os.PathLike),
                 "a path (a string or a pathlib.Path)"),
}

#: The most CPU threads a run takes (``--threads``): more than any CPU runs, so that a typo
#: is one message, not OpenMP's own abort while it allocates the threads.
MAX_THREADS = 1024

#: The widest ``small-cnn`` (``--width``): 16 times the default, far past what its images
#: need, so that a typo is one message, not an allocation of terabytes.
MAX_WIDTH = 1024


def check_setting_types(config: ScanConfig | TrainConfig) -> None:
    """Refuse a setting of the wrong type (a Python caller's ``ScanConfig(lr="0.1")``,
    ``epochs=1.5``, ``classes="a,b"``) with one clear message, before any check compares
    it; numpy numbers (``np.int64(3)`` from a sweep) are replaced by the Python ones, so
    that they reach torch and ``summary.json`` as plain values, and a ``weights`` path by
    its string.

    Raises:
        NoisyCleanError: the first setting of the wrong type.
    """
    import numpy as np  # here: the CLI's --help imports this module

    if config.data is None:
        raise NoisyCleanError("--data must be a path (the image folder), and none was given")
    for f in fields(config):
        value = getattr(config, f.name)
        if isinstance(value, np.generic):
            value = value.item()
            setattr(config, f.name, value)
        if f.name == "weights" and isinstance(value, os.PathLike):  # a local file
            value = os.fspath(value)
            setattr(config, f.name, value)
        kind, _, optional = str(f.type).partition(" | ")
        if value is None and optional == "None":
            continue
        if f.name == "extra":
            from .outputs.write import json_safe  # as summary.json will hold it

            try:  # it goes into summary.json, written at the end of the run
                json.dumps(json_safe(value), allow_nan=False)
                ok = isinstance(value, dict)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise NoisyCleanError(f"extra must be a dict of JSON values (it goes into "
                                      f"summary.json), not {value!r}")
            continue
        if f.name in ("classes", "no_class"):
            ok = isinstance(value, list | tuple) and all(isinstance(c, str) for c in value)
            wanted_text = "a list of class names" if f.name == "classes" else "a list of labels"
        elif kind in _SETTING_TYPES:
            accepts, wanted_text = _SETTING_TYPES[kind]
            ok = accepts(value)
        else:
            continue
        if not ok:
            raise NoisyCleanError(f"{option_name(f.name)} must be {wanted_text}, not {value!r}")
        if kind == "PathLike" and os.fspath(value) == "":  # Path("") would be "."
            if optional != "None" or f.name == "data":  # data: None is refused above
                raise NoisyCleanError(f"{option_name(f.name)} must be a path, not ''")
            setattr(config, f.name, None)  # the default, as if not given
        elif kind == "PathLike" and not isinstance(value, Path):
            setattr(config, f.name, Path(value))


def checked_config(config: Any, kind: type) -> Any:
    """A copy of ``config`` with its settings' types checked (:func:`check_setting_types`:
    numpy numbers as Python ones, path settings as :class:`~pathlib.Path`); the caller's
    object is left as it was.

    Raises:
        NoisyCleanError: ``config`` is not a ``kind`` (a ``ScanConfig`` for ``scan``, a
            ``TrainConfig`` for ``train``), or a setting is of the wrong type.
    """
    if not isinstance(config, kind):
        raise NoisyCleanError(
            f"expected a {kind.__name__} (noisyclean.{kind.__name__}(data=..., ...)), not "
            f"{type(config).__name__} {config!r:.80}")
    config = replace(config)
    check_setting_types(config)
    return config


def shared_checks(config: ScanConfig | TrainConfig) -> list[tuple[bool, str]]:
    """The checks of the settings that ``scan`` and ``train`` share, as ``(ok, message)``
    pairs in the order to report them: first a finite value for every float setting (an
    infinite or NaN one would only show up as a diverged training), then the seed, the
    decoding and CPU thread counts, the optimiser, the images and network, the mixture and
    the thresholds. Each command's ``validate`` adds its own. The settings' types must have
    been checked (:func:`check_setting_types`, which ``scan`` and ``train`` call first)."""
    checks = [
        (math.isfinite(value), f"{option_name(f.name)} must be a finite number, not {value}")
        for f in fields(config)
        if isinstance(value := getattr(config, f.name), float)
    ]
    return checks + [
        (0 <= config.seed <= MAX_SEED, f"--seed must be between 0 and {MAX_SEED}"),
        (is_utf8(str(config.out)), f"--out {printable(str(config.out))} is a path that is not "
         "valid UTF-8, which summary.json cannot record: choose another"),
        (config.cache_dir is None or is_utf8(str(config.cache_dir)),
         f"--cache-dir {printable(str(config.cache_dir))} is a path that is not valid UTF-8: "
         "choose another"),
        (config.workers is None or config.workers >= 1,
         f"--workers must be at least 1, not {config.workers}"),
        (config.threads is None or 1 <= config.threads <= MAX_THREADS,
         f"--threads must be between 1 and {MAX_THREADS}, not {config.threads}"),
        (config.batch_size >= 2, "--batch-size must be at least 2"),
        (config.lr > 0, "--lr must be positive"),
        (0 <= config.momentum < 1, "--momentum must be in [0, 1)"),
        (config.weight_decay >= 0, "--weight-decay must not be negative"),
        (config.image_size is None or 8 <= config.image_size <= 1024,
         "--image-size must be between 8 and 1024"),
        (config.resize in RESIZE_MODES, f"--resize must be one of {', '.join(RESIZE_MODES)}"),
        (4 <= config.width <= MAX_WIDTH, f"--width must be between 4 and {MAX_WIDTH}"),
        (config.model is None or config.model.strip() != "",
         "--model must name a model (small-cnn, preact-resnet18, resnet18, ...), not ''"),
        (config.mixture in MIXTURES, f"--mixture must be one of {', '.join(MIXTURES)}"),
        (0.0 < config.threshold < 1.0, "--threshold must be between 0 and 1"),
        (0.0 <= config.relabel_threshold <= 1.0, "--relabel-threshold must be between 0 and 1"),
    ]


@dataclass
class TrainConfig(DataSettings):
    """Settings of ``noisyclean train``; each field, with those of :class:`DataSettings`, is
    one CLI option of the same name.

    ``None`` means "choose automatically": ``image_size``, ``model``, ``amp`` and
    ``channels_last`` as in :class:`ScanConfig`; ``lr_drop_epoch`` at half the epochs;
    ``tau``, ``lambda_u``, ``penalty`` and ``loss_history`` from the noise rate that the
    warm-up's own mixture estimates (see ``noisyclean.train.methods.dividemix``);
    ``forget_rate`` (co-teaching) likewise after the warm-up; ``bootstrap_beta`` per
    ``bootstrap`` mode (Reed et al.: 0.8 hard, 0.95 soft).
    The DivideMix defaults follow the paper and its reference code at CIFAR scale; each
    other method's defaults follow its paper (see ``noisyclean.train.losses``).
    """

    out: PathLike = Path("noisyclean-train")
    method: str = "dividemix"
    resume: PathLike | None = None
    val: PathLike | None = None
    truth: PathLike | None = None
    #: labels of the ``truth`` file that mean "none of the classes" (``--no-class``)
    no_class: list[str] | None = None

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

    # co-teaching (Han et al. 2018)
    forget_rate: float | None = None
    num_gradual: int = 10

    # robust losses, bootstrapping, mixup, label smoothing
    gce_q: float = 0.7
    sce_alpha: float = 0.1
    sce_beta: float = 1.0
    sce_a: float = -4.0
    bootstrap: str = "hard"
    bootstrap_beta: float | None = None
    mixup: bool = False
    mixup_alpha: float = 32.0
    smoothing: float = 0.1

    # the final table (as scan)
    signal: str = "loss+margin"
    fusion: str = "hybrid"
    cut: str = "arbitrated"
    flip_ranking: bool = True
    threshold: float = 0.5
    relabel_threshold: float = 0.7
    tta: bool = True
    save_probs: bool = False

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_json` (unknown keys are ignored; the settings of a run
        started before ``cut`` existed get :data:`LEGACY_TABLE`)."""
        paths = {"data", "labels", "out", "resume", "val", "truth", "cache_dir"}
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {
            key: (Path(value) if key in paths and value is not None else value)
            for key, value in values.items()
            if key in known
        }
        return cls(**{**LEGACY_TABLE, **kwargs} if "cut" not in values else kwargs)
