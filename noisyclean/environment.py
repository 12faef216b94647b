"""What a run ran on: the record ``scan`` and ``train`` both put into ``summary.json``."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from . import __version__
from .allocator import malloc_state
from .device import cpu_name

if TYPE_CHECKING:
    from .data.load import Dataset


def library_versions() -> dict[str, str]:
    """Versions of noisyclean, Python and the libraries that shape its results.

    torchvision's comes from its package metadata: importing it only to read its version
    would cost a scan seconds whenever its backbone is not a torchvision one.
    """
    import PIL
    import sklearn

    versions = {
        "noisyclean": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
        "pillow": PIL.__version__,
    }
    try:
        versions["torchvision"] = metadata.version("torchvision")
    except metadata.PackageNotFoundError:  # pragma: no cover - torchvision is a dependency
        pass
    return versions


def run_environment(dataset: Dataset) -> dict[str, Any]:
    """The image size, normalisation, decode cache, device and library versions of a run on
    ``dataset``, as ``summary.json`` records them."""
    device = dataset.device
    on_cuda = device.type == "cuda"
    return {
        "image_size": dataset.image_size,
        "normalisation": {"mean": dataset.data.mean, "std": dataset.data.std},
        "decode_cache": {
            "dir": str(dataset.cache_dir) if dataset.cache_dir else None,
            "hit": dataset.from_cache,
        },
        "device": {
            "type": device.type,
            "name": torch.cuda.get_device_name(device) if on_cuda else cpu_name(),
            "precision": str(dataset.precision.dtype or torch.float32),
            "channels_last": dataset.channels_last,
            "threads": torch.get_num_threads(),
            # the most GPU memory torch held for the run (None off CUDA)
            "peak_memory_mib": (round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
                                if on_cuda else None),
            # glibc's malloc holding freed memory or not (noisyclean.allocator)
            "malloc": malloc_state(),
        },
        "versions": library_versions(),
    }
