"""``scan --epochs 0 --weights FILE``: score the images with a network trained elsewhere,
as it is loaded, with no warm-up.

A team that already has a network trained on its classes (last month's model, or one
trained on other images of the same classes) can rank a new batch of labelled images by
it. Its losses are then out of sample: the network has not fitted these labels, wrong ones
included, which is what confident learning asks of its predicted probabilities. The rest of
the scan (the mixtures, the cut, the flip posterior, the suggested labels) is as after a
warm-up.

The network's outputs must be the scan's classes in the scan's order (the class folders
sorted, or ``--classes``), and its images normalised as in its training. A state dict names
neither, but a weights file that ``train`` wrote (``net1.pt``) has the run's ``summary.json``
beside it, which names it: its classes are then checked against the scan's, and its
per-channel normalisation used (:func:`trained_run`). Either way the scan reports how often
the network agrees with the given labels and warns where that is no better than always
answering the most common class.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import ScanConfig, changed_options
from .errors import NoisyCleanError
from .outputs.write import NETWORK_FILE
from .underfit import agreement, majority_share

#: Settings of the warm-up that scoring as loaded does not use.
NO_TRAINING_IGNORED = ("batch_size", "lr", "momentum", "weight_decay", "penalty", "augment",
                       "correction", "late_loss", "resized_batches", "loss_history")


def scores_as_loaded(config: ScanConfig) -> bool:
    """Whether the scan scores with the ``--weights`` network as loaded (``--epochs 0``)."""
    return config.epochs == 0


def as_loaded_checks(config: ScanConfig) -> list[tuple[bool, str]]:
    """``(ok, message)`` pairs for ``--epochs 0``: a weights file, and none of the options
    that train (``--folds``, ``--signal aum``, ``--networks 2``, resized epochs)."""
    if not scores_as_loaded(config):
        return []
    weights = config.weights
    return [
        (weights is not None and Path(weights).expanduser().is_file(),
         "--epochs 0 needs a --weights file, whose network scores the images as it is loaded "
         "(one trained on these classes, in this order, such as train's net1.pt)"
         + ("" if weights is None else f"; --weights {weights} is not a file (a torchvision "
            "weights name gives an ImageNet classifier, not one for these classes)")),
        (config.folds == 1, "--epochs 0 and --folds exclude each other (--folds trains a "
         "network per fold)"),
        (config.signal != "aum", "--epochs 0 and --signal aum exclude each other (AUM is "
         "measured while training)"),
        (config.networks == 1, "--epochs 0 scores with one network: --networks must be 1"),
        (not config.low_res_epochs and not config.mid_res_epochs,
         "--epochs 0 trains no epoch: --low-res-epochs and --mid-res-epochs must be 0"),
    ]


def as_loaded_ignored(config: ScanConfig, explicit: Collection[str] | None = None) -> list[str]:
    """The options of :data:`NO_TRAINING_IGNORED` that were asked for (given on the command
    line, ``explicit``; else set to other than their defaults), as the command line writes
    them."""
    return changed_options(config, NO_TRAINING_IGNORED, explicit)


@dataclass(frozen=True)
class TrainedRun:
    """What the ``summary.json`` beside a weights file says of the run that trained it."""

    summary: Path
    classes: list[str]
    normalisation: tuple[list[float], list[float]]
    #: the side and the resize mode its images trained at (None: not recorded)
    image_size: int | None = None
    resize: str | None = None


def trained_run(
    weights: str | Path, log: Callable[[str], None] | None = None
) -> TrainedRun | None:
    """The run that wrote the weights file ``weights`` (``train``'s ``net1.pt``), from the
    ``summary.json`` beside it; None where there is none, or one without a list of classes
    and a normalisation of the three colour channels (not a noisyclean run's), or one that
    does not name the file among the networks its run wrote (``weights_files``; a summary
    written before ``train`` recorded them names ``net<k>.pt``, the only names it wrote).
    Every load with such a weights file normalises the images as that run did
    (:func:`~noisyclean.data.load.load_dataset`), with a warm-up too.

    Args:
        weights: the ``--weights`` file.
        log: told (a warning), where a run's summary lies beside the file but does not
            name it, that the file is not taken for that run's.
    """
    # beside the file itself: a link to a run's net1.pt names that run
    file = Path(weights).expanduser().resolve()
    path = file.parent / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        classes, norm = summary["classes"], summary["normalisation"]
        mean, std = [float(v) for v in norm["mean"]], [float(v) for v in norm["std"]]
        files = summary.get("weights_files")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)
            or len(mean) != 3 or len(std) != 3 or min(std) <= 0):
        return None
    named = (file.name in files if isinstance(files, list)
             else NETWORK_FILE.fullmatch(file.name) is not None)
    if not named:
        if log is not None:
            log(f"--weights {weights} lies beside a run's summary ({path}) that does not name "
                "it among the run's networks, so it is not taken for that run's: the images "
                "are normalised as for other pretrained weights, by ImageNet's statistics (to "
                "use the run's, pass the net<k>.pt file it wrote, or a link to it)")
        return None
    settings = summary.get("settings")
    size = summary.get("image_size")
    # a run's settings without a resize mode are of a noisyclean that only cropped
    resize = settings.get("resize", "crop") if isinstance(settings, dict) else None
    return TrainedRun(path, classes, (mean, std),
                      size if isinstance(size, int) and not isinstance(size, bool) else None,
                      resize if isinstance(resize, str) else None)


def check_run_classes(run: TrainedRun, classes: list[str]) -> None:
    """Refuse to score with a network whose run (:func:`trained_run`) had other classes, or
    the same ones in another order: its outputs would name the wrong classes.

    Raises:
        NoisyCleanError: the two lists differ.
    """
    if list(run.classes) != list(classes):
        raise NoisyCleanError(
            f"the --weights network was trained on the classes {', '.join(run.classes)} "
            f"({run.summary}), and this scan's are {', '.join(classes)}: --epochs 0 needs the "
            "same classes in the same order (--classes sets the scan's)")


def refuse_partial_weights(message: str) -> None:
    """The ``warn`` of :func:`~noisyclean.models.build_model` for ``--epochs 0``: a weights
    file that leaves part of the network at random weights cannot score as it is.

    Raises:
        NoisyCleanError: always, with ``message`` (which tensors were not loaded).
    """
    raise NoisyCleanError(f"{message}: --epochs 0 scores with the network as loaded, so every "
                          "weight must come from --weights (a network trained on these classes)")


def agreement_text(
    probs: np.ndarray, labels: np.ndarray, classes: list[str]
) -> tuple[float, str, str | None]:
    """How often the loaded network's predicted class is the given label: the rate, a log
    line, and a warning (None if none) where the rate is no better than always answering
    the most common given class (the network's classes are not the scan's, or are in
    another order)."""
    rate = agreement(np.asarray(probs).argmax(1), labels)
    majority = majority_share(labels, len(classes))
    line = (f"scored with the --weights network as loaded: it agrees with {rate:.1%} of the "
            "given labels")
    warning = None
    if rate <= majority:
        warning = (f"the --weights network agrees with only {rate:.1%} of the given labels, no "
                   f"more than always answering the most common class ({majority:.1%}): was it "
                   f"trained on these classes, in this order ({', '.join(classes[:5])}"
                   f"{', ...' if len(classes) > 5 else ''})?")
    return rate, line, warning
