"""From ``TrainConfig`` to a method of the one loop: which methods exist, how many networks
each trains, their option checks, their extra ``history.csv`` columns, and their
construction (DivideMix is built in :mod:`noisyclean.train.run`)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import numpy as np
from torch import nn

from ...config import TrainConfig, ignored_text, option_name
from ...data.batches import DeviceImages
from ..loop import Method, Precision
from ..losses import BOOTSTRAP_MODES
from .bootstrap import Bootstrap
from .coteaching import CoTeaching
from .dynamic_bootstrap import DynamicBootstrap
from .gce import GCE
from .label_smoothing import LabelSmoothing
from .mae import MAE
from .mixup import Mixup
from .sce import SCE
from .standard import Standard

#: Methods that train two networks (the others train one).
TWO_NETWORKS = ("dividemix", "coteaching")
#: Methods with an estimate made after ``--warmup-epochs`` epochs.
NEED_WARMUP = ("dividemix", "dynamic-bootstrap")

#: Extra ``history.csv`` columns per method (DivideMix's are in ``run.py``).
METHOD_COLUMNS: dict[str, list[str]] = {
    "standard": [],
    "coteaching": ["forget_rate", "label_precision"],
    "gce": ["ce"],
    "sce": ["ce"],
    "mae": ["ce"],
    "bootstrap": ["ce"],
    "dynamic-bootstrap": ["ce", "noise_weight", "estimated_noise_rate"],
    "mixup": ["ce"],
    "label-smoothing": ["ce"],
}


#: The options that only some methods use, and those methods (``--mixture``, the
#: optimiser's and the final table's options apply to every method; ``--penalty`` and
#: ``--mixup`` elsewhere are errors, see :func:`method_checks`).
METHOD_OPTIONS: dict[str, tuple[str, ...]] = {
    "tau": ("dividemix",),
    "lambda_u": ("dividemix",),
    "lambda_r": ("dividemix", "dynamic-bootstrap"),
    "temperature": ("dividemix",),
    "alpha": ("dividemix",),
    "augmentations": ("dividemix",),
    "rampup_epochs": ("dividemix",),
    "loss_history": ("dividemix",),
    "warmup_epochs": ("dividemix", "dynamic-bootstrap", "coteaching"),
    "forget_rate": ("coteaching",),
    "num_gradual": ("coteaching",),
    "gce_q": ("gce",),
    "sce_alpha": ("sce",),
    "sce_beta": ("sce",),
    "sce_a": ("sce",),
    "bootstrap": ("bootstrap",),
    "bootstrap_beta": ("bootstrap",),
    "mixup_alpha": ("mixup", "dynamic-bootstrap"),
    "smoothing": ("label-smoothing",),
}


def unused_options(method: str, given: Collection[str]) -> list[str]:
    """The options among ``given`` (field names) that ``method`` does not use, as
    ``--option`` names, in :data:`METHOD_OPTIONS`' order."""
    return [option_name(name) for name, methods in METHOD_OPTIONS.items()
            if name in given and method not in methods]


#: Options a method of :data:`METHOD_OPTIONS` uses only with another setting:
#: ``(option, method) -> (when it is used, what the warning adds)``.
CONDITIONAL_OPTIONS: dict[tuple[str, str], tuple[Callable[[TrainConfig], bool], str]] = {
    ("mixup_alpha", "dynamic-bootstrap"): (lambda c: c.mixup, "without --mixup"),
    ("warmup_epochs", "coteaching"): (lambda c: c.forget_rate is None,
                                      "with --forget-rate (no warm-up estimates it)"),
}


def conditionally_unused(config: TrainConfig, given: Collection[str]) -> list[str]:
    """Warnings for the options among ``given`` that ``config.method`` uses, but not with
    the other settings given (:data:`CONDITIONAL_OPTIONS`): ``--mixup-alpha does not apply
    to --method dynamic-bootstrap without --mixup: ignored``."""
    warnings = []
    for (name, method), (used, condition) in CONDITIONAL_OPTIONS.items():
        if name in given and config.method == method and not used(config):
            warnings.append(ignored_text([option_name(name)], f"--method {method} {condition}"))
    return warnings


def n_networks(method: str) -> int:
    """Networks trained by ``method``."""
    return 2 if method in TWO_NETWORKS else 1


def method_checks(config: TrainConfig) -> list[tuple[bool, str]]:
    """``(ok, message)`` pairs for the options of the methods other than DivideMix."""
    method = config.method
    automatic_rate = method == "coteaching" and config.forget_rate is None
    warmed = method == "dynamic-bootstrap" or automatic_rate
    return [
        (config.forget_rate is None or 0.0 <= config.forget_rate < 1.0,
         "--forget-rate must be in [0, 1)"),
        (config.num_gradual >= 1, "--num-gradual must be at least 1"),
        (0.0 < config.gce_q <= 1.0, "--gce-q must be in (0, 1]"),
        (config.sce_alpha >= 0 and config.sce_beta >= 0 and config.sce_alpha + config.sce_beta > 0,
         "--sce-alpha and --sce-beta must not be negative, and not both 0"),
        (config.sce_a < 0, "--sce-a must be negative (it is the value taken for log 0)"),
        (config.bootstrap in BOOTSTRAP_MODES,
         f"--bootstrap must be one of {', '.join(BOOTSTRAP_MODES)}"),
        (config.bootstrap_beta is None or 0.0 <= config.bootstrap_beta <= 1.0,
         "--bootstrap-beta must be between 0 and 1"),
        (config.mixup_alpha > 0, "--mixup-alpha must be positive"),
        (0.0 <= config.smoothing < 1.0, "--smoothing must be in [0, 1)"),
        (not config.mixup or method == "dynamic-bootstrap",
         "--mixup applies to --method dynamic-bootstrap (M-DYR-H); for mixup alone use "
         "--method mixup"),
        (not config.penalty or method in ("dividemix", "standard"),
         "--penalty applies to --method dividemix and standard"),
        (not warmed or config.warmup_epochs >= 1,
         f"--warmup-epochs must be at least 1 for {method}"
         + (" when --forget-rate is not given (the rate is estimated after the warm-up)"
            if automatic_rate else "")),
        (not warmed or config.epochs > config.warmup_epochs,
         f"--epochs ({config.epochs}) must be larger than --warmup-epochs "
         f"({config.warmup_epochs}): {method} needs at least one epoch after the warm-up"
         + (" (or give --forget-rate)" if automatic_rate else "")),
    ]


def build_method(
    config: TrainConfig,
    data: DeviceImages,
    models: list[nn.Module],
    precision: Precision,
    correct: np.ndarray | None = None,
    log: Callable[[str], None] | None = None,
) -> Method:
    """The method object of ``config.method`` (any but ``dividemix``).

    Single-network methods, like the baseline, take batches of ``2 * batch_size`` (what
    DivideMix's labelled plus unlabelled halves add up to); so does co-teaching, whose two
    networks see the same batch. ``correct`` (``--truth``, as
    :func:`~noisyclean.train.run.label_is_correct` returns it: 1.0 right, 0.0 wrong, NaN
    unknown) goes to co-teaching, for its ``label_precision``.
    """
    batch = 2 * config.batch_size
    seed = config.seed
    method = config.method
    built: Any
    if method == "standard":
        built = Standard(data, batch_size=batch, seed=seed, penalty=bool(config.penalty))
    elif method == "coteaching":
        built = CoTeaching(
            data, models, precision, forget_rate=config.forget_rate,
            num_gradual=config.num_gradual, warmup_epochs=config.warmup_epochs,
            batch_size=batch, seed=seed, mixture=config.mixture, correct=correct, log=log,
        )
    elif method == "gce":
        built = GCE(data, q=config.gce_q, batch_size=batch, seed=seed)
    elif method == "sce":
        built = SCE(data, config.sce_alpha, config.sce_beta, config.sce_a, batch, seed)
    elif method == "mae":
        built = MAE(data, batch_size=batch, seed=seed)
    elif method == "bootstrap":
        built = Bootstrap(data, config.bootstrap, config.bootstrap_beta, batch, seed)
    elif method == "dynamic-bootstrap":
        built = DynamicBootstrap(
            data, models[0], precision, warmup_epochs=config.warmup_epochs,
            use_mixup=config.mixup, alpha=config.mixup_alpha, lambda_r=config.lambda_r,
            batch_size=batch, seed=seed, log=log,
        )
    elif method == "mixup":
        built = Mixup(data, alpha=config.mixup_alpha, batch_size=batch, seed=seed)
    elif method == "label-smoothing":
        built = LabelSmoothing(data, smoothing=config.smoothing, batch_size=batch, seed=seed)
    else:
        raise ValueError(f"no method {method!r} here")
    return built
