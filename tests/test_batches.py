"""Device-side batches: crops, flips and normalisation on the tensor of decoded images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from noisyclean.data.batches import DeviceImages, channel_stats, default_pad


def _images(n: int = 6, size: int = 8) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def _unnormalise(data: DeviceImages, x: torch.Tensor) -> np.ndarray:
    mean = torch.tensor(data.mean).view(1, 3, 1, 1)
    std = torch.tensor(data.std).view(1, 3, 1, 1)
    return torch.round((x * std + mean) * 255).permute(0, 2, 3, 1).numpy().astype(np.int64)


def test_channel_stats_hand_case() -> None:
    images = np.zeros((2, 1, 1, 3), dtype=np.uint8)
    images[1] = 255
    mean, std = channel_stats(images)
    assert np.allclose(mean, [0.5] * 3)
    assert np.allclose(std, [0.5] * 3)


def test_channel_stats_are_the_moments_of_the_float_images(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(1)
    # channels with different ranges, so that a channel mixed up with another shows
    images = np.stack([rng.integers(0, 256, (7, 9, 5)), rng.integers(100, 120, (7, 9, 5)),
                       rng.integers(0, 30, (7, 9, 5))], axis=-1).astype(np.uint8)
    pixels = images.reshape(-1, 3).astype(np.float64) / 255.0
    mean, std = channel_stats(images)
    assert np.allclose(mean, pixels.mean(axis=0), rtol=0, atol=1e-12)
    assert np.allclose(std, pixels.std(axis=0), rtol=0, atol=1e-12)
    # every third image: the step that keeps at most about max_images
    every_third = images[::3].reshape(-1, 3).astype(np.float64) / 255.0
    mean3, std3 = channel_stats(images, max_images=2)  # step 7 // 2
    assert np.allclose(mean3, every_third.mean(axis=0), rtol=0, atol=1e-12)
    assert np.allclose(std3, every_third.std(axis=0), rtol=0, atol=1e-12)
    # a read-only array (a memory map, say) gives the same, and is not handed to
    # torch.from_numpy, which warns of it (once a process, so the warning is no test)
    read_only = images.copy()
    read_only.flags.writeable = False
    from_numpy = torch.from_numpy

    def writable_only(array: np.ndarray) -> torch.Tensor:
        assert array.flags.writeable
        return from_numpy(array)

    monkeypatch.setattr(torch, "from_numpy", writable_only)
    assert channel_stats(read_only) == (mean, std)
    # a constant channel gets the floor, not 0
    assert channel_stats(np.full((2, 2, 2, 3), 7, dtype=np.uint8))[1] == [1e-3] * 3


def test_unaugmented_batch_is_the_normalised_image() -> None:
    images = _images()
    data = DeviceImages(images, np.arange(6) % 2, torch.device("cpu"))
    x = data.batch(torch.tensor([3, 1]))
    assert x.shape == (2, 3, 8, 8) and x.dtype == torch.float32
    assert np.array_equal(_unnormalise(data, x), images[[3, 1]].astype(np.int64))
    assert torch.equal(data.labels[torch.tensor([3, 1])], torch.tensor([1, 1]))


def test_flipped_is_the_mirror_image() -> None:
    images = _images()
    data = DeviceImages(images, np.zeros(6), torch.device("cpu"))
    x = data.flipped(torch.tensor([2]))
    assert np.array_equal(_unnormalise(data, x)[0], images[2, :, ::-1].astype(np.int64))


def test_augmented_batch_is_a_shifted_window_of_the_reflect_padded_image() -> None:
    images = _images(n=4, size=8)
    data = DeviceImages(images, np.zeros(4), torch.device("cpu"), pad=2)
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect").astype(np.int64)
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(20):
        idx = torch.tensor([0, 1, 2, 3])
        out = _unnormalise(data, data.batch(idx, augment=True, generator=g))
        for b, i in enumerate(idx.tolist()):
            windows = {
                (dy, dx, f)
                for dy in range(5)
                for dx in range(5)
                for f in (False, True)
                if np.array_equal(
                    out[b],
                    padded[i, dy : dy + 8, dx : dx + 8][:, ::-1] if f
                    else padded[i, dy : dy + 8, dx : dx + 8],
                )
            }
            assert windows, "augmented image is not a crop (or mirrored crop) of its source"
            seen |= windows
    flips = {f for _, _, f in seen}
    shifts = {(dy, dx) for dy, dx, _ in seen}
    assert flips == {False, True}
    assert len(shifts) > 10  # offsets really vary


def test_same_generator_seed_gives_the_same_batch() -> None:
    data = DeviceImages(_images(), np.zeros(6), torch.device("cpu"))
    idx = torch.arange(6)
    a = data.batch(idx, augment=True, generator=torch.Generator().manual_seed(5))
    b = data.batch(idx, augment=True, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_channels_last_batches() -> None:
    data = DeviceImages(_images(), np.zeros(6), torch.device("cpu"), channels_last=True)
    x = data.batch(torch.arange(3))
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_default_pad_is_the_cifar_recipe_at_32px() -> None:
    assert default_pad(32) == 4
    assert default_pad(16) == 2
    assert default_pad(224) == 28


def test_imagenet_statistics_with_pretrained_weights() -> None:
    data = DeviceImages(_images(), np.zeros(6), torch.device("cpu"), pretrained=True)
    assert data.mean == [0.485, 0.456, 0.406]


def test_augmented_batch_gathers_what_broadcast_indexing_gives() -> None:
    """The flat-index gather returns exactly the crops that indexing the padded images with
    broadcast (image, row, column) tensors returns, for the offsets and flips drawn."""
    images = _images(n=7, size=12)
    data = DeviceImages(images, np.zeros(7), torch.device("cpu"), pad=3, channels_last=True)
    idx = torch.tensor([6, 0, 3, 3, 5])
    out = data.batch(idx, augment=True, generator=torch.Generator().manual_seed(11))
    g = torch.Generator().manual_seed(11)  # the same draws, in the same order
    dy = torch.randint(0, 7, (5,), generator=g)
    dx = torch.randint(0, 7, (5,), generator=g)
    flip = torch.rand(5, generator=g) < 0.5
    rows = dy[:, None] + torch.arange(12)[None, :]
    cols = dx[:, None] + torch.arange(12)[None, :]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    padded = torch.from_numpy(np.pad(images, ((0, 0), (3, 3), (3, 3), (0, 0)), mode="reflect"))
    crops = padded[idx[:, None, None], rows[:, :, None], cols[:, None, :]]
    assert flip.any() and not flip.all()
    assert torch.equal(out, data._normalise(crops))
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_the_cpu_store_is_the_decoded_array_itself_with_no_padded_copy() -> None:
    images = _images(n=5, size=8)
    data = DeviceImages(images, np.zeros(5), torch.device("cpu"), pad=3)
    assert data.store.data_ptr() == images.__array_interface__["data"][0]
    assert data.store.shape == images.shape
    # a read-only array (a memory map) is copied once, and its crops are the same
    frozen = images.copy()
    frozen.flags.writeable = False
    other = DeviceImages(frozen, np.zeros(5), torch.device("cpu"), pad=3)
    idx = torch.arange(5)
    assert torch.equal(other.batch(idx, augment=True, generator=torch.Generator().manual_seed(2)),
                       data.batch(idx, augment=True, generator=torch.Generator().manual_seed(2)))


def test_crops_reflect_even_where_the_pad_is_as_wide_as_the_image() -> None:
    """np.pad's reflect mode repeats its reflection where the pad reaches past the image
    (a 1 or 2 px image); the crops follow it."""
    for size, pad in ((1, 1), (2, 2), (3, 4)):
        images = _images(n=2, size=size)
        data = DeviceImages(images, np.zeros(2), torch.device("cpu"), pad=pad)
        padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
        g = torch.Generator().manual_seed(size)
        out = _unnormalise(data, data.batch(torch.tensor([0, 1]), augment=True, generator=g))
        g = torch.Generator().manual_seed(size)
        dy = torch.randint(0, 2 * pad + 1, (2,), generator=g)
        dx = torch.randint(0, 2 * pad + 1, (2,), generator=g)
        flip = torch.rand(2, generator=g) < 0.5
        for b in range(2):
            crop = padded[b, dy[b] : dy[b] + size, dx[b] : dx[b] + size]
            assert np.array_equal(out[b], crop[:, ::-1] if flip[b] else crop)


def test_channel_stats_by_chunks_is_the_whole_arrays() -> None:
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, size=(2600, 3, 3, 3), dtype=np.uint8)
    mean, std = channel_stats(images, max_images=100)  # every 26th image, in chunks
    sample = images[::26].astype(np.float64) / 255
    assert mean == pytest.approx(sample.mean(axis=(0, 1, 2)).tolist(), abs=1e-12)
    assert std == pytest.approx(sample.std(axis=(0, 1, 2)).tolist(), abs=1e-12)
