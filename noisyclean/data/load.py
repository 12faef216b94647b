"""From a folder (or manifest) to decoded images on the compute device: the shared front of
``scan`` and ``train``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..as_loaded import TrainedRun, trained_run
from ..device import resolve_device
from ..errors import FEW, NoisyCleanError, count_text, listing
from ..models import SMALL_MODELS, check_input_size, check_weights
from ..names import case_twins
from ..outputs.load import safe_name
from ..progress import Progress
from ..train.loop import Precision
from .batches import DeviceImages
from .decode import ELONGATED_RATIO, ImageProbe, decode_images, default_cache_dir, probe_images
from .discover import Samples, discover

MIN_IMAGES = 10


def auto_model(image_size: int) -> str:
    """The backbone picked when none is named: ``small-cnn`` for images up to 64 px, else
    ``resnet18``."""
    return "small-cnn" if image_size <= 64 else "resnet18"


def auto_image_size(probed: int | None, model: str | None) -> int:
    """Default ``--image-size``: the median ``probed`` side (the shorter one, or with
    ``--resize pad`` / ``squash`` the longer one) rounded up to a multiple of 8, at least
    16, at most 64 for the small models and 224 for torchvision models."""
    cap = 64 if model in (None, *SMALL_MODELS) else 224
    side = probed or 32
    return int(min(cap, max(16, -(-side // 8) * 8)))


def _tell_of_shapes(probe: ImageProbe, size: int, automatic: bool, resize: str,
                    progress: Progress) -> None:
    """Say where the images are much larger than the side chosen for them (the automatic
    side stops at 64 px for the small networks), and, where ``resize`` is ``crop``, warn
    where a share of them are so elongated that their centre square, all the scan sees,
    leaves most of each out."""
    side, which = (probe.side, "shorter") if resize == "crop" else (probe.long_side, "longer")
    if automatic and side is not None and side >= 2 * size:
        progress.log(f"the images' {which} sides are about {side} px; they train at "
                     f"{size} px (--image-size with a torchvision --model, such as "
                     "--image-size 224 --model resnet18, keeps more detail)")
    if resize == "crop" and probe.elongated and probe.elongated >= max(2, 0.05 * probe.opened):
        progress.warn(f"{probe.elongated} of {probe.opened} images looked at have one side "
                      f"more than {ELONGATED_RATIO:g} times the other: each image is cropped "
                      "to its centre square, which leaves most of such an image out "
                      "(--resize pad or --resize squash keeps all of it)")


def _tell_of_other_views(run: TrainedRun, size: int, resize: str,
                         warn: Callable[[str], None]) -> None:
    """Warn where the run that wrote ``--weights`` trained at another image side or resize
    mode than this load's: its network sees the images otherwise than it learnt them."""
    other = []
    if run.image_size not in (None, size):
        other.append(f"--image-size {run.image_size}")
    if run.resize not in (None, resize):
        other.append(f"--resize {run.resize}")
    if other:
        warn(f"the run that wrote --weights ({run.summary}) trained its images with "
             f"{' and '.join(other)}, and these come at --image-size {size} --resize {resize}; "
             f"give {' '.join(other)} to show the network its images as it learnt them "
             "(what scoring it as loaded, scan --epochs 0, needs most)")


def choose_size_and_model(
    image_size: int | None, model: str | None, probe: Callable[[], int | None]
) -> tuple[int, str]:
    """The image side and backbone a scan trains at: the ones given, else
    :func:`auto_image_size` of the images' probed side (``probe`` is called only then) and
    :func:`auto_model` of that side."""
    size = image_size or auto_image_size(probe(), model)
    return size, model or auto_model(size)


@dataclass
class Dataset:
    """Usable images of a dataset, decoded and placed on the compute device.

    Attributes:
        samples: everything discovery found (all paths, class names).
        paths: paths of the usable images (relative to ``samples.root``), row order.
        labels: given label index per usable image.
        data: the images and labels on the device, ready for batching.
        skipped: unreadable files (``path``, ``reason``).
        image_size: side length the images were resized to.
        model: the backbone name (the automatic choice resolved).
        device: the compute device.
        precision: autocast settings for that device.
        channels_last: whether batches use the channels-last memory format.
        cache_dir: decode cache folder (None when the cache is off).
        from_cache: whether the decode came from the cache.
        timings: seconds spent in discovery and decoding.
        weights_run: the noisyclean run (its classes, normalisation and ``summary.json``)
            whose normalisation the images took, because it wrote the ``weights`` file
            (None: not so normalised).
    """

    samples: Samples
    paths: list[str]
    labels: np.ndarray
    data: DeviceImages
    skipped: pd.DataFrame
    image_size: int
    model: str
    device: torch.device
    precision: Precision
    channels_last: bool
    cache_dir: Path | None
    from_cache: bool
    timings: dict[str, float] = field(default_factory=dict)
    weights_run: TrainedRun | None = None

    @property
    def classes(self) -> list[str]:
        """Class names, indexed by label."""
        return self.samples.classes


def _warn_unfoldable_classes(classes: list[str], warn: Callable[[str], None]) -> None:
    """Warn about the classes of a ``--labels`` manifest that cannot be class folders (a
    ``/`` in them, more than 255 bytes, or a leading ``.``, a folder that ImageFolder
    readers skip): ``apply`` refuses to write a cleaned copy with them, at the end of the
    review, while the scan, its report, export and evaluation work."""
    bad = [c for c in classes if not safe_name(c) or c.startswith(".")]
    if bad:
        warn(f"class(es) {listing(bad, FEW, quote=True)} of --labels cannot be folder names "
             "(a '/' in them, a leading '.', or too long): 'noisyclean apply' will refuse to "
             "write a cleaned copy with them; rename them in the manifest before the review")


def _warn_unreadable_classes(samples: Samples, present: np.ndarray,
                             warn: Callable[[str], None]) -> None:
    """Warn about each class that has files but no usable image (every one unreadable),
    and about the classes given (``--classes``) that no image has: each stays a class (an
    output of the network, a choice in review), learnt from nothing, where an empty class
    folder is dropped."""
    found = np.bincount(samples.labels, minlength=len(samples.classes))
    empty = [samples.classes[i] for i in np.flatnonzero(found == 0)]
    if empty:
        warn(f"class(es) {listing(empty, FEW, quote=True)} have no image: they stay classes "
             "that the network learns nothing of (a typo in --classes?)")
    for i in np.setdiff1d(np.flatnonzero(found), present):
        warn(f"class {samples.classes[i]!r} has no usable image: none of its "
             f"{count_text(int(found[i]), 'file')} could be read (see skipped.csv); it stays a "
             "class that the network learns nothing of")


def load_dataset(
    root: Path,
    labels_csv: Path | None = None,
    classes: list[str] | None = None,
    image_size: int | None = None,
    model: str | None = None,
    weights: str | None = None,
    workers: int | None = None,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    device: str = "auto",
    amp: bool | None = None,
    channels_last: bool | None = None,
    progress: Progress | None = None,
    normalisation: tuple[list[float], list[float]] | None = None,
    validation: bool = False,
    weights_read: bool = True,
    width: int = 24,
    resize: str = "crop",
) -> Dataset:
    """Discover, decode (through the cache) and move a labelled image set to the device.

    Args:
        root: image folder (ImageFolder layout, or the root of ``labels_csv`` paths).
        labels_csv: optional manifest with ``path,label`` columns.
        classes: optional class names to use (and their order).
        image_size: resize side; None picks :func:`auto_image_size`.
        model: backbone name; None picks ``small-cnn`` up to 64 px, else ``resnet18``.
        weights: pretrained weights: a noisyclean run's weights file (one that the run's
            ``summary.json`` beside it names, such as ``train``'s ``net1.pt``) switches the
            normalisation to that run's, any other (a torchvision name or another file) to
            ImageNet's statistics.
        workers: decode threads (None: all cores).
        cache_dir: decode cache folder (None: the default cache).
        use_cache: read and write the decode cache.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        amp: mixed precision (None: bf16 on CUDA, and on a CPU with native bf16).
        channels_last: channels-last batches (None: on CUDA and on the CPU).
        progress: progress display.
        normalisation: per-channel ``(mean, std)`` to normalise with (a training set's,
            for validation images); None: as ``weights`` says, else the images' own.
        validation: a set to measure accuracy on, not to find wrong labels in: one usable
            image of one class is enough, and ``model`` is not tried at ``image_size``
            (:func:`~noisyclean.models.check_input_size`), which the training set's load
            has done, with its classes.
        weights_read: ``weights`` will be read, so it is checked before the decode
            (:func:`~noisyclean.models.check_weights`: a file is read into a throwaway
            network of ``model`` with the classes found); False for a resumed training,
            whose checkpoint holds every weight.
        width: ``small-cnn``'s ``--width``, for that check.
        resize: how each image becomes a square (``crop``, ``pad`` or ``squash``; see
            :data:`~noisyclean.config.RESIZE_MODES`).

    Returns:
        A :class:`Dataset`.

    Raises:
        NoisyCleanError: fewer than 10 usable images, or a single usable class (unless
            ``validation``), or any discovery error.
    """
    progress = progress or Progress(quiet=True)
    timings: dict[str, float] = {}
    torch_device = resolve_device(device)
    if torch_device.type == "cuda" and not validation:  # summary.json's peak is the run's
        torch.cuda.reset_peak_memory_stats(torch_device)

    t0 = time.perf_counter()
    samples = discover(root, labels_csv, classes, min_classes=1 if validation else 2)
    timings["discover"] = time.perf_counter() - t0
    if labels_csv is not None and not validation:
        _warn_unfoldable_classes(samples.classes, progress.warn)
    for twins in case_twins(samples.classes):
        progress.warn(f"classes {listing(twins, quote=True)} differ only in letter case (or "
                      "Unicode form) and are separate classes; rename one if they are the same")

    t0 = time.perf_counter()
    # the headers of up to 64 images, for the automatic size and the shapes' warnings: none
    # for a validation set, which comes at the training set's size
    probe = (ImageProbe(None, 0, 0) if validation and image_size is not None
             else probe_images(samples.root, samples.paths))
    # the side that becomes --image-size: the shorter one where the centre square is kept,
    # the longer one where the whole image is (pad, squash)
    size, model_name = choose_size_and_model(
        image_size, model, lambda: probe.side if resize == "crop" else probe.long_side)
    if not validation:  # a validation set comes at a size already checked for its model
        _tell_of_shapes(probe, size, image_size is None, resize, progress)
        check_input_size(model_name, len(samples.classes), size)  # before a long decode
        if weights_read:
            check_weights(model_name, weights, len(samples.classes), width)
    cache = (cache_dir or default_cache_dir()) if use_cache else None
    task = progress.task("decode", total=len(samples))
    decoded = decode_images(
        samples.root,
        samples.paths,
        size,
        workers=workers,
        cache_dir=cache,
        progress=lambda k: progress.advance(task, k),
        warn=progress.warn,
        resize=resize,
    )
    progress.finish(task)
    timings["decode"] = time.perf_counter() - t0
    skipped = pd.DataFrame(decoded.skipped + samples.not_followed + samples.unusable,
                           columns=["path", "reason"])
    if decoded.skipped:
        progress.log(f"skipped {len(decoded.skipped)} unreadable file(s); see skipped.csv")
    if samples.not_followed:
        progress.log(f"did not follow {len(samples.not_followed)} symbolic link(s), loops or "
                     "broken ones; see skipped.csv")
    if samples.unusable:
        progress.log(f"skipped {len(samples.unusable)} file(s) or folder(s) that cannot be "
                     "used (a name that is not UTF-8, not a regular file); see skipped.csv")

    paths = [samples.paths[i] for i in decoded.ok]
    labels = samples.labels[decoded.ok]
    present = np.unique(labels)
    if len(paths) < (1 if validation else MIN_IMAGES):
        raise NoisyCleanError(
            f"only {len(paths)} usable image(s) under {samples.root} "
            f"({len(skipped)} skipped); need at least {1 if validation else MIN_IMAGES}"
        )
    if len(present) < 2 and not validation:
        raise NoisyCleanError(
            f"only one class ({samples.classes[present[0]]!r}) has usable images; "
            "need at least two classes to find wrong labels"
        )
    if not validation:
        _warn_unreadable_classes(samples, present, progress.warn)
    precision = Precision.choose(torch_device, amp)
    # Channels-last convolutions are faster on CUDA and on the CPU, in bfloat16 and in
    # float32 (an AMD EPYC in float32: a small-cnn epoch 5% faster, scoring passes 1.6x).
    use_channels_last = (
        torch_device.type in ("cuda", "cpu") if channels_last is None else channels_last
    )
    run = None
    if normalisation is None and weights is not None and Path(weights).expanduser().is_file():
        # a network trained by noisyclean expects its run's inputs, not ImageNet's
        run = trained_run(weights, progress.warn)
        if run is not None:
            normalisation = run.normalisation
            progress.log(f"images normalised as in the run that wrote --weights ({run.summary})")
            _tell_of_other_views(run, size, resize, progress.warn)
    data = DeviceImages(
        decoded.images,
        labels,
        torch_device,
        pretrained=weights is not None,
        channels_last=use_channels_last,
        stats=normalisation,
    )
    return Dataset(
        samples=samples,
        paths=paths,
        labels=labels,
        data=data,
        skipped=skipped,
        image_size=size,
        model=model_name,
        device=torch_device,
        precision=precision,
        channels_last=use_channels_last,
        cache_dir=cache,
        from_cache=decoded.from_cache,
        timings=timings,
        weights_run=run,
    )


def load_configured(config: Any, progress: Progress | None = None, **overrides: Any) -> Dataset:
    """:func:`load_dataset` with the data, decoding and device settings of a
    :class:`~noisyclean.config.ScanConfig` or :class:`~noisyclean.config.TrainConfig`
    (``data``, ``labels``, ``classes``, ``image_size``, ``resize``, ``model``, ``weights``,
    ``workers``, ``cache_dir``, ``use_cache``, ``device``, ``amp``, ``channels_last``,
    ``width``);
    ``overrides`` replace any of :func:`load_dataset`'s arguments."""
    arguments: dict[str, Any] = {
        "root": config.data,
        "labels_csv": config.labels,
        "classes": config.classes,
        "image_size": config.image_size,
        "resize": config.resize,
        "model": config.model,
        "weights": config.weights,
        "workers": config.workers,
        "cache_dir": config.cache_dir,
        "use_cache": config.use_cache,
        "device": config.device,
        "amp": config.amp,
        "channels_last": config.channels_last,
        "progress": progress,
        "width": config.width,
    }
    arguments.update(overrides)
    return load_dataset(**arguments)
