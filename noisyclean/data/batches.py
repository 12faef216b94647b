"""Device-side batches: the decoded uint8 images live on the compute device (when they fit);
a batch is cut, augmented (a random crop of the reflect-padded image and a horizontal flip,
in one gather) and normalised there, the way fast CIFAR trainers do it.
"""

from __future__ import annotations

import numpy as np
import torch

from ..models import IMAGENET_MEAN, IMAGENET_STD


def default_pad(image_size: int) -> int:
    """Padding for pad-and-crop augmentation: 4 px at 32 px (the CIFAR recipe), scaled."""
    return max(1, round(image_size / 8))


def channel_stats(images: np.ndarray, max_images: int = 10_000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (in [0,1] units) of uint8 images (N, H, W, C).

    Computed on every ``n // max_images``-th of the ``n`` images (all of them where ``n`` is
    under ``2 * max_images``), from each channel's histogram of its 256 values: exact sums
    in integers, then the moments in float64 (no float copy of the images: in fresh
    processes, loading 10,000 32-px images took 0.6-1.7 s with one, 0.25 s with the
    histograms).
    """
    step = max(1, len(images) // max_images)
    channels = images.shape[-1]
    counts = np.zeros((channels, 256), dtype=np.int64)
    # a chunk at a time: a copy of the sampled images (every ``step``-th is no view) would
    # take as much memory as 10,000 to 20,000 of them
    chunk = 1024 * step
    for start in range(0, len(images), chunk):
        # contiguous and writable (a read-only array, such as a memory map, is copied)
        sample = torch.from_numpy(np.require(images[start : start + chunk : step],
                                             requirements=["C", "W"]))
        pixels = sample.reshape(-1, channels)
        for c in range(channels):
            counts[c] += torch.bincount(pixels[:, c], minlength=256).numpy()
    counts = counts.astype(np.float64)
    values = np.arange(256, dtype=np.float64) / 255.0
    n = counts.sum(axis=1)
    mean = counts @ values / n
    variance = (counts * (values[None, :] - mean[:, None]) ** 2).sum(axis=1) / n
    std = np.maximum(np.sqrt(variance), 1e-3)
    return mean.tolist(), std.tolist()


def _fits_on_device(n_bytes: int, device: torch.device) -> bool:
    if device.type != "cuda":
        return True
    free, _total = torch.cuda.mem_get_info(device)
    return n_bytes < 0.5 * free


class DeviceImages:
    """Decoded images held as one uint8 tensor, with their labels.

    The crops are of the images reflect-padded by ``pad`` on each side, but no padded copy
    is made: a crop's rows and columns are mapped back into the image (as ``np.pad``'s
    ``reflect`` mode would fill them), so the images take their own memory only (at 224 px
    a padded copy was 1.56 times their size, and both were held at once). On the CPU the
    store is the decoded array itself, not a copy.

    Args:
        images: uint8 array (N, H, W, 3), H == W.
        labels: int64 array (N,) of given labels.
        device: where batches are produced (the images stay there when they fit).
        pretrained: normalise with ImageNet statistics instead of the dataset's own.
        channels_last: return batches in channels_last memory format.
        pad: padding for the random crop; ``None`` chooses :func:`default_pad`.
        stats: per-channel ``(mean, std)`` to normalise with (e.g. a training set's, for
            its validation images); ``None`` uses ImageNet's with ``pretrained``, else the
            images' own.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        device: torch.device,
        pretrained: bool = False,
        channels_last: bool = False,
        pad: int | None = None,
        stats: tuple[list[float], list[float]] | None = None,
    ) -> None:
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError("images must be a uint8 array of shape (N, H, W, 3)")
        self.n, self.height, self.width, _ = images.shape
        self.device = device
        self.pad = default_pad(self.height) if pad is None else pad
        self.channels_last = channels_last
        p = self.pad
        images = np.require(images, requirements=["C", "W"])  # a read-only array is copied
        store = device if _fits_on_device(images.nbytes, device) else torch.device("cpu")
        # where the images stay on the CPU for a GPU run, each gathered batch is pinned on
        # its way (:meth:`_normalise`); pinning the whole store would only hold a second,
        # page-locked copy of it, since every batch is gathered into a new tensor
        self.store = torch.from_numpy(images).to(store)
        # row (column) i of the padded image is row _rows[i] of the image
        self._rows = torch.from_numpy(np.pad(np.arange(self.height), p, mode="reflect"))
        self._cols = torch.from_numpy(np.pad(np.arange(self.width), p, mode="reflect"))
        self._crop_rows = torch.arange(self.height)
        self._crop_cols = torch.arange(self.width)
        self.labels = torch.as_tensor(labels, dtype=torch.long, device=device)
        if stats is not None:
            mean, std = stats
        else:
            mean, std = (IMAGENET_MEAN, IMAGENET_STD) if pretrained else channel_stats(images)
        self.mean, self.std = list(mean), list(std)
        std_t = torch.tensor(std, dtype=torch.float32, device=device)
        self._scale = (1.0 / (255.0 * std_t)).view(1, 3, 1, 1)
        self._shift = (-torch.tensor(mean, dtype=torch.float32, device=device) / std_t).view(
            1, 3, 1, 1
        )

    def __len__(self) -> int:
        return self.n

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC -> normalised float NCHW (channels_last layout when asked)."""
        if x.device.type == "cpu" and self.device.type == "cuda":
            x = x.pin_memory()  # page-locked: the copy need not wait for the GPU's queue
        x = x.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        x = x * self._scale + self._shift
        if not self.channels_last:
            x = x.contiguous()
        return x

    def batch(
        self, idx: torch.Tensor, augment: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Images ``idx`` as a normalised float batch (B, 3, H, W).

        With ``augment``, each image gets its own random crop (offsets 0..2*pad) and a
        horizontal flip with probability 1/2, drawn from ``generator`` on the CPU, so a
        seed gives the same batches on every device.
        """
        idx = idx.cpu()
        b = len(idx)
        if not augment:
            return self._normalise(self.store[idx.to(self.store.device)])
        p = self.pad
        dy = torch.randint(0, 2 * p + 1, (b,), generator=generator)
        dx = torch.randint(0, 2 * p + 1, (b,), generator=generator)
        flip = torch.rand(b, generator=generator) < 0.5
        # the crop's rows and columns in the padded image, then in the image itself
        rows = self._rows[dy[:, None] + self._crop_rows[None, :]]
        cols = self._cols[dx[:, None] + self._crop_cols[None, :]]
        cols = torch.where(flip[:, None], cols.flip(1), cols)
        dev = self.store.device
        if dev.type != "cpu":
            x = self.store[
                idx.to(dev)[:, None, None], rows.to(dev)[:, :, None], cols.to(dev)[:, None, :]
            ]
            return self._normalise(x)
        # On the CPU, one gather of whole pixels (3 bytes each) by their flat index: the
        # same values as the three broadcast index tensors above, about twice as fast.
        _, height, width, channels = self.store.shape
        flat = idx[:, None, None] * (height * width) + rows[:, :, None] * width + cols[:, None, :]
        x = self.store.view(-1, channels).index_select(0, flat.view(-1))
        return self._normalise(x.view(b, self.height, self.width, channels))

    def flipped(self, idx: torch.Tensor) -> torch.Tensor:
        """Images ``idx``, unaugmented but mirrored left-right (flip test-time augmentation)."""
        return self._normalise(self.store[idx.cpu().to(self.store.device)].flip(2))
