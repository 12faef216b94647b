"""Tests for noisyclean.data.decode: every pixel mode through a real file, EXIF orientation,
resize + centre crop, skipping bad files, the on-disk cache, progress and size probing."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import PIL
import pytest
from PIL import Image

from noisyclean.data.decode import (
    DECODE_VERSION,
    REASON_CORRUPT,
    REASON_EMPTY,
    REASON_NOT_IMAGE,
    REASON_TOO_LARGE,
    REASON_UNREADABLE,
    DecodedImages,
    ImageTooLargeError,
    cache_key,
    decode_image,
    decode_images,
    default_cache_dir,
    probe_image_size,
    probe_images,
)

WHITE = (255, 255, 255)


def _halves(mode: str, left: object, right: object, size: tuple[int, int] = (8, 8)) -> Image.Image:
    """An image whose left half is ``left`` and right half is ``right``."""
    img = Image.new(mode, size, right)  # type: ignore[arg-type]
    img.paste(left, (0, 0, size[0] // 2, size[1]))  # type: ignore[arg-type]
    return img


def _decode_halves(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode an 8x8 file at size 8 (no resampling) and return its left and right colours."""
    out = decode_image(path, 8)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    left, right = out[:, :4].reshape(-1, 3), out[:, 4:].reshape(-1, 3)
    # each half is uniform
    assert (left == left[0]).all() and (right == right[0]).all()
    return left[0], right[0]


def _save(img: Image.Image, path: Path, **kwargs: object) -> Path:
    img.save(path, **kwargs)
    return path


# --------------------------------------------------------------------------- modes


def test_mode_L(tmp_path: Path) -> None:
    path = _save(_halves("L", 100, 200), tmp_path / "l.png")
    assert Image.open(path).mode == "L"
    left, right = _decode_halves(path)
    assert left.tolist() == [100, 100, 100] and right.tolist() == [200, 200, 200]


def test_mode_LA_composited_over_white(tmp_path: Path) -> None:
    path = _save(_halves("LA", (100, 255), (0, 0)), tmp_path / "la.png")
    assert Image.open(path).mode == "LA"
    left, right = _decode_halves(path)
    assert left.tolist() == [100, 100, 100]
    assert right.tolist() == list(WHITE)


def test_mode_P(tmp_path: Path) -> None:
    img = _halves("P", 0, 1)
    img.putpalette([200, 10, 20, 30, 180, 40] + [0, 0, 0] * 254)
    path = _save(img, tmp_path / "p.png")
    assert Image.open(path).mode == "P"
    left, right = _decode_halves(path)
    assert left.tolist() == [200, 10, 20] and right.tolist() == [30, 180, 40]


def test_mode_P_with_transparency(tmp_path: Path) -> None:
    img = _halves("P", 0, 1)
    img.putpalette([200, 10, 20, 30, 180, 40] + [0, 0, 0] * 254)
    path = _save(img, tmp_path / "pt.png", transparency=0)
    with Image.open(path) as check:
        assert check.mode == "P" and check.info.get("transparency") == 0
    left, right = _decode_halves(path)
    assert left.tolist() == list(WHITE)
    assert right.tolist() == [30, 180, 40]


def test_mode_P_gif_transparency_first_frame(tmp_path: Path) -> None:
    frame0 = _halves("P", 0, 1)
    frame0.putpalette([200, 10, 20, 30, 180, 40] + [0, 0, 0] * 254)
    frame1 = Image.new("P", (8, 8), 1)
    frame1.putpalette([200, 10, 20, 30, 180, 40] + [0, 0, 0] * 254)
    path = tmp_path / "anim.gif"
    frame0.save(path, save_all=True, append_images=[frame1], transparency=1, duration=50)
    with Image.open(path) as check:
        assert getattr(check, "n_frames", 1) == 2
    left, right = _decode_halves(path)
    assert left.tolist() == [200, 10, 20]
    assert right.tolist() == list(WHITE)


def test_mode_RGB(tmp_path: Path) -> None:
    path = _save(_halves("RGB", (1, 2, 3), (250, 128, 7)), tmp_path / "rgb.png")
    left, right = _decode_halves(path)
    assert left.tolist() == [1, 2, 3] and right.tolist() == [250, 128, 7]


def test_mode_RGBA(tmp_path: Path) -> None:
    img = _halves("RGBA", (10, 20, 30, 255), (0, 0, 0, 0))
    img.paste((0, 0, 0, 128), (6, 0, 8, 8))  # half-transparent black, far right columns
    path = _save(img, tmp_path / "rgba.png")
    assert Image.open(path).mode == "RGBA"
    out = decode_image(path, 8)
    assert (out[:, :4] == [10, 20, 30]).all()
    assert (out[:, 4:6] == WHITE).all()  # fully transparent -> white
    assert np.abs(out[:, 6:].astype(int) - 127).max() <= 1  # 50% black over white


def test_mode_CMYK_tiff(tmp_path: Path) -> None:
    cmyk_left, cmyk_right = (10, 200, 30, 40), (0, 0, 0, 255)
    path = _save(_halves("CMYK", cmyk_left, cmyk_right), tmp_path / "cmyk.tif")
    assert Image.open(path).mode == "CMYK"
    left, right = _decode_halves(path)
    expected_left = Image.new("CMYK", (1, 1), cmyk_left).convert("RGB").getpixel((0, 0))
    expected_right = Image.new("CMYK", (1, 1), cmyk_right).convert("RGB").getpixel((0, 0))
    assert tuple(left.tolist()) == expected_left
    assert tuple(right.tolist()) == expected_right
    assert right.tolist() == [0, 0, 0]


def test_mode_CMYK_jpeg(tmp_path: Path) -> None:
    cmyk = (10, 200, 30, 40)
    path = _save(Image.new("CMYK", (16, 16), cmyk), tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    out = decode_image(path, 8)
    expected = np.array(Image.new("CMYK", (1, 1), cmyk).convert("RGB").getpixel((0, 0)))
    assert np.abs(out.reshape(-1, 3).astype(int) - expected).max() <= 4


def test_mode_I16_png_scaled_min_max(tmp_path: Path) -> None:
    values = np.full((8, 8), 1000, dtype=np.uint16)
    values[:, :4] = 51400
    values[0, 0] = 65535
    path = _save(Image.fromarray(values), tmp_path / "i16.png")
    assert Image.open(path).mode.startswith("I;16")
    out = decode_image(path, 8)
    assert out[0, 0].tolist() == [255, 255, 255]
    assert (out[1:, :4] == round((51400 - 1000) * 255 / 64535)).all()  # 199
    assert (out[:, 4:] == 0).all()


def test_mode_I16_tiff(tmp_path: Path) -> None:
    values = np.full((8, 8), 256 * 17, dtype=np.uint16)
    values[:, :4] = 256 * 240
    path = _save(Image.fromarray(values), tmp_path / "i16.tif")
    assert Image.open(path).mode.startswith("I;16")
    left, right = _decode_halves(path)
    assert left.tolist() == [255] * 3 and right.tolist() == [0] * 3


def test_twelve_bit_data_decodes_alike_in_a_16_bit_png_and_a_32_bit_tiff(
    tmp_path: Path,
) -> None:
    """A 12-bit image (values 0..4095) in a 16-bit PNG keeps its range, as in a TIFF of
    32-bit integers: the same values decode the same in either format (the high byte of
    the 16-bit values alone gave 16 grey levels, nearly black)."""
    gradient = np.linspace(0, 4095, 64 * 64).reshape(64, 64).astype(np.uint16)
    png = _save(Image.fromarray(gradient), tmp_path / "12bit.png")
    tif = _save(Image.fromarray(gradient.astype(np.int32)), tmp_path / "12bit.tif")
    assert Image.open(png).mode.startswith("I;16") and Image.open(tif).mode == "I"
    from_png, from_tif = decode_image(png, 32), decode_image(tif, 32)
    assert np.array_equal(from_png, from_tif)
    assert from_png.min() <= 5 and from_png.max() >= 250 and len(np.unique(from_png)) > 100


def test_mode_I_scaled_min_max(tmp_path: Path) -> None:
    img = _halves("I", -1000, 3000)
    img.paste(1000, (0, 0, 4, 2))  # top of the left half: mid value
    path = _save(img, tmp_path / "i.tif")
    assert Image.open(path).mode == "I"
    out = decode_image(path, 8)
    assert (out[2:, :4] == 0).all()  # min -> 0
    assert (out[:, 4:] == 255).all()  # max -> 255
    assert (out[:2, :4] == 128).all()  # 2000/4000 * 255 = 127.5 -> 128


def test_mode_I_constant_is_zero(tmp_path: Path) -> None:
    path = _save(Image.new("I", (8, 8), 70000), tmp_path / "const.tif")
    assert (decode_image(path, 8) == 0).all()


def test_mode_F_scaled_min_max(tmp_path: Path) -> None:
    path = _save(_halves("F", 0.25, 0.75), tmp_path / "f.tif")
    assert Image.open(path).mode == "F"
    left, right = _decode_halves(path)
    assert left.tolist() == [0, 0, 0] and right.tolist() == [255, 255, 255]


def test_mode_1_bilevel(tmp_path: Path) -> None:
    path = _save(_halves("1", 0, 1), tmp_path / "bw.png")
    assert Image.open(path).mode == "1"
    left, right = _decode_halves(path)
    assert left.tolist() == [0, 0, 0] and right.tolist() == [255, 255, 255]


@pytest.mark.parametrize("mode", ["YCbCr", "LAB"])
def test_mode_other_colour_spaces(tmp_path: Path, mode: str) -> None:
    colour = (100, 120, 140)
    path = _save(Image.new(mode, (8, 8), colour), tmp_path / f"{mode}.tif")
    read_back = Image.open(path).mode
    if read_back != mode:  # the fixture, not noisyclean: Pillow 11.3 and older read RGB
        pytest.skip(f"Pillow {PIL.__version__} reads a {mode} TIFF it wrote back as "
                    f"{read_back}: no {mode} image to decode")
    expected = Image.new(mode, (1, 1), colour).convert("RGB").getpixel((0, 0))
    left, right = _decode_halves(path)
    assert tuple(left.tolist()) == expected == tuple(right.tolist())


# --------------------------------------------------------------------------- orientation, resize


def _red_left_blue_right(width: int = 8, height: int = 4) -> Image.Image:
    return _halves("RGB", (255, 0, 0), (0, 0, 255), (width, height))


def test_exif_orientation_png(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display: left half goes on top
    rotated = _save(_red_left_blue_right(), tmp_path / "o6.png", exif=exif)
    plain = _save(_red_left_blue_right(), tmp_path / "o1.png")

    out = decode_image(rotated, 4)  # displayed 4x8 -> centre 4x4: rows 2..5
    assert (out[:2] == [255, 0, 0]).all() and (out[2:] == [0, 0, 255]).all()

    base = decode_image(plain, 4)  # stored 8x4 -> centre 4x4: columns 2..5
    assert (base[:, :2] == [255, 0, 0]).all() and (base[:, 2:] == [0, 0, 255]).all()


def test_exif_orientation_jpeg(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise to display: left half goes down
    path = _save(_red_left_blue_right(32, 16), tmp_path / "o8.jpg", exif=exif, quality=95)
    out = decode_image(path, 16).astype(int)
    top, bottom = out[:4].reshape(-1, 3).mean(0), out[-4:].reshape(-1, 3).mean(0)
    assert top[2] > 200 and top[0] < 60  # blue on top
    assert bottom[0] > 200 and bottom[2] < 60  # red at the bottom


def test_resize_centre_crop_wide(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), (0, 200, 0))
    img.paste((255, 0, 0), (0, 0, 10, 20))  # left quarter red: cropped away
    img.paste((0, 0, 255), (30, 0, 40, 20))  # right quarter blue: cropped away
    out = decode_image(_save(img, tmp_path / "wide.png"), 10)
    assert out.shape == (10, 10, 3)
    assert (out[:, 1:-1] == [0, 200, 0]).all()
    assert out[..., 1].min() > 150 and out[..., 0].max() < 60 and out[..., 2].max() < 60


def test_resize_centre_crop_tall(tmp_path: Path) -> None:
    img = Image.new("RGB", (20, 40), (0, 200, 0))
    img.paste((255, 0, 0), (0, 0, 20, 10))
    out = decode_image(_save(img, tmp_path / "tall.png"), 10)
    assert out.shape == (10, 10, 3)
    assert out[..., 1].min() > 150 and out[..., 0].max() < 60


def _quarters_wide(tmp_path: Path) -> Path:
    """A 40x20 image: red left quarter, green middle, blue right quarter."""
    img = Image.new("RGB", (40, 20), (0, 200, 0))
    img.paste((255, 0, 0), (0, 0, 10, 20))
    img.paste((0, 0, 255), (30, 0, 40, 20))
    return _save(img, tmp_path / "wide.png")


def test_resize_pad_keeps_the_whole_image_on_black(tmp_path: Path) -> None:
    """--resize pad: the longer side becomes the square's (40 -> 10 px, so 20 -> 5 px),
    centred between black bands of 2 and 3 rows; all three colours are kept."""
    out = decode_image(_quarters_wide(tmp_path), 10, "pad")
    assert out.shape == (10, 10, 3) and out.dtype == np.uint8
    assert (out[:2] == 0).all() and (out[7:] == 0).all()  # (10 - 5) // 2 rows above
    band = out[2:7]
    assert (band[:, 0] == [255, 0, 0]).all() and (band[:, -1] == [0, 0, 255]).all()
    assert (band[:, 4:6] == [0, 200, 0]).all()
    tall = decode_image(_save(Image.new("L", (3, 60), 200), tmp_path / "tall.png"), 20, "pad")
    # 3x60 -> 1x20, at column (20 - 1) // 2
    assert (tall[:, 9] == 200).all() and (tall[:, :9] == 0).all() and (tall[:, 10:] == 0).all()


def test_a_square_image_decodes_the_same_in_every_mode(tmp_path: Path) -> None:
    """On square images (CIFAR's) the three modes are one: a scan with --resize pad sees
    the pixels the default does, at any side."""
    path = _save(_noise_image(3, (40, 40)), tmp_path / "square.png")
    for size in (16, 40, 64):
        crop = decode_image(path, size)
        for mode in ("pad", "squash"):
            np.testing.assert_array_equal(decode_image(path, size, mode), crop)


def test_resize_squash_keeps_the_whole_image_stretched(tmp_path: Path) -> None:
    """--resize squash: 40x20 -> 10x10, each quarter 2.5 px wide, every row the same."""
    out = decode_image(_quarters_wide(tmp_path), 10, "squash")
    assert out.shape == (10, 10, 3)
    assert (out == out[:1]).all()  # the vertical stretch keeps every row alike
    assert (out[:, :2] == [255, 0, 0]).all() and (out[:, -2:] == [0, 0, 255]).all()
    assert (out[:, 4:6] == [0, 200, 0]).all()
    with pytest.raises(ValueError, match="resize must be one of crop, pad, squash"):
        decode_image(_quarters_wide(tmp_path), 10, "fit")


def test_the_resize_mode_is_part_of_the_cache_key(
    mixed: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """Another mode decodes again; crop's key is the one it had before the modes existed,
    so caches written by earlier versions are still hits."""
    root, paths = mixed
    cache = tmp_path / "cache"
    crop = decode_images(root, paths, 12, cache_dir=cache)
    pad = decode_images(root, paths, 12, cache_dir=cache, resize="pad")
    assert pad.from_cache is False and len(list(cache.iterdir())) == 2
    assert not np.array_equal(pad.images, crop.images)
    assert decode_images(root, paths, 12, cache_dir=cache, resize="pad").from_cache is True
    again = decode_images(root, paths, 12, cache_dir=cache)
    assert again.from_cache is True and np.array_equal(again.images, crop.images)
    assert cache_key(root, paths, 12) == cache_key(root, paths, 12, "crop") == _old_key(
        root, paths, 12)
    assert len({cache_key(root, paths, 12, mode) for mode in ("crop", "pad", "squash")}) == 3


def _old_key(root: Path, paths: list[str], size: int) -> str:
    """The key as computed before --resize (noisyclean 0.1.0 until 2026-12-07), written
    out from its definition: the recipe line, the resolved root, then per file its path
    and ``os.stat`` identity (-1 five times for a file that is gone)."""
    base = Path(root).resolve()
    parts = [f"noisyclean-decode\0{DECODE_VERSION}\0{size}\0{len(paths)}\n".encode(),
             os.fsencode(base) + b"\n"]
    for rel in paths:
        if (base / rel).exists():
            st = os.stat(base / rel)
            ident = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_dev, st.st_ino]
        else:
            ident = [-1] * 5
        parts.append("\0".join(map(str, [rel, *ident])).encode("utf-8", "surrogateescape")
                     + b"\n")
    return hashlib.sha256(b"".join(parts)).hexdigest()


def test_upscale_tiny(tmp_path: Path) -> None:
    path = _save(_red_left_blue_right(8, 8), tmp_path / "tiny.png")
    out = decode_image(path, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert (out[:, :6] == [255, 0, 0]).all() and (out[:, -6:] == [0, 0, 255]).all()


def test_large_jpeg_downscale(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (600, 400), (30, 90, 150)), tmp_path / "big.jpg", quality=95)
    out = decode_image(path, 24)
    assert out.shape == (24, 24, 3)
    assert np.abs(out.reshape(-1, 3).astype(int) - [30, 90, 150]).max() <= 4


def test_decode_image_too_large(tmp_path: Path) -> None:
    path = _png_header_only(tmp_path / "big.png", 10_000, 9_000)  # 90M > MAX_PIXELS
    # Pillow warns when opening it (decode_images silences that); decode_image refuses it
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(ImageTooLargeError):
        decode_image(path, 8)


def test_decode_image_raises_on_bad_files(tmp_path: Path) -> None:
    text = tmp_path / "x.jpg"
    text.write_text("hello")
    with pytest.raises(Exception):  # noqa: B017 - any exception; the caller classifies it
        decode_image(text, 8)
    with pytest.raises(ValueError):
        decode_image(_save(Image.new("RGB", (4, 4)), tmp_path / "ok.png"), 0)


# --------------------------------------------------------------------------- decode_images


def _noise_image(seed: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width x height`` pixels (no real pixel data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + data)
    return path


def _snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under root (and so also the listing)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def mixed(tmp_path: Path) -> tuple[Path, list[str]]:
    """A dataset folder with good and bad files; returns (root, relative paths)."""
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    _noise_image(0).save(root / "a" / "good1.png")
    (root / "a" / "zero.png").write_bytes(b"")
    full = root / "a" / "full.png"
    _noise_image(1, (64, 64)).save(full)
    data = full.read_bytes()
    full.unlink()
    (root / "a" / "trunc.png").write_bytes(data[: len(data) // 2])
    (root / "a" / "text.jpg").write_text("this is not a jpeg")
    _noise_image(2).save(root / "b" / "good2.jpg", quality=90)
    (root / "b" / "notes.txt").write_text("some notes")
    _noise_image(3, (64, 64)).save(root / "b" / "full.jpg", quality=90)
    data = (root / "b" / "full.jpg").read_bytes()
    (root / "b" / "full.jpg").unlink()
    (root / "b" / "trunc.jpg").write_bytes(data[: len(data) // 2])
    _noise_image(4, (20, 30)).save(root / "b" / "good3.gif")
    _png_header_only(root / "b" / "bomb.png", 20_000, 20_000)  # Pillow refuses it itself
    _png_header_only(root / "b" / "bomb2.png", 10_000, 10_000)  # Pillow only warns
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    paths.append("b/vanished.png")  # listed but not there
    return root, paths


EXPECTED_GOOD = ["a/good1.png", "b/good2.jpg", "b/good3.gif"]


def _check_mixed(result: DecodedImages, root: Path, paths: list[str], size: int) -> None:
    assert isinstance(result, DecodedImages)
    assert result.size == size
    assert result.ok.dtype == np.int64
    assert [paths[i] for i in result.ok] == EXPECTED_GOOD
    assert np.all(np.diff(result.ok) > 0)
    assert result.images.shape == (3, size, size, 3)
    assert result.images.dtype == np.uint8 and result.images.flags.c_contiguous
    for j, i in enumerate(result.ok):
        np.testing.assert_array_equal(result.images[j], decode_image(root / paths[i], size))
    reasons = dict(result.skipped)
    assert [p for p, _ in result.skipped] == [p for p in paths if p not in EXPECTED_GOOD]
    assert reasons["a/zero.png"] == REASON_EMPTY
    assert reasons["a/text.jpg"] == REASON_NOT_IMAGE
    assert reasons["b/notes.txt"] == REASON_NOT_IMAGE
    assert reasons["a/trunc.png"].startswith(REASON_CORRUPT)
    assert reasons["b/trunc.jpg"].startswith(REASON_CORRUPT)
    assert "truncated" in reasons["b/trunc.jpg"]
    assert reasons["b/bomb.png"] == REASON_TOO_LARGE
    assert reasons["b/bomb2.png"] == REASON_TOO_LARGE
    assert reasons["b/vanished.png"].startswith(REASON_UNREADABLE)
    assert "No such file" in reasons["b/vanished.png"]
    assert all("\n" not in r for r in reasons.values())


@pytest.mark.parametrize("workers", [1, 3])
def test_decode_images_skips_bad_files(
    mixed: tuple[Path, list[str]], workers: int, tmp_path: Path
) -> None:
    root, paths = mixed
    before = _snapshot(root)
    result = decode_images(root, paths, 12, workers=workers)
    assert result.from_cache is False
    _check_mixed(result, root, paths, 12)
    assert _snapshot(root) == before  # same files, same bytes


def test_decode_images_empty_list(tmp_path: Path) -> None:
    result = decode_images(tmp_path, [], 8)
    assert result.images.shape == (0, 8, 8, 3) and len(result.ok) == 0 and result.skipped == []


def test_decode_images_all_bad(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"")
    result = decode_images(tmp_path, ["x.png"], 8)
    assert result.images.shape == (0, 8, 8, 3)
    assert result.skipped == [("x.png", REASON_EMPTY)]


def test_progress_counts(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    paths = []
    for i in range(37):
        name = f"{i:02d}.png"
        _noise_image(i, (12, 10)).save(root / name)
        paths.append(name)
    (root / "bad.png").write_bytes(b"")
    paths.append("bad.png")
    calls: list[int] = []
    threads: set[int] = set()

    def progress(k: int) -> None:
        calls.append(k)
        threads.add(threading.get_ident())

    result = decode_images(root, paths, 8, workers=4, progress=progress)
    assert sum(calls) == len(paths) == 38
    assert all(k > 0 for k in calls) and len(calls) > 1
    assert threads == {threading.get_ident()}  # called from the calling thread
    assert len(result.ok) == 37


def test_cache_hit_and_invalidation(mixed: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, paths = mixed
    cache = tmp_path / "cache" / "nested"  # created on demand
    before = _snapshot(root)

    first = decode_images(root, paths, 12, cache_dir=cache)
    assert first.from_cache is False
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # no temp files left behind

    calls: list[int] = []
    second = decode_images(root, paths, 12, cache_dir=cache, progress=calls.append)
    assert second.from_cache is True
    assert calls == [len(paths)]
    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.ok, first.ok)
    assert second.ok.dtype == np.int64
    assert second.skipped == first.skipped
    assert second.size == 12 and second.images.flags.c_contiguous
    _check_mixed(second, root, paths, 12)

    # another size is another key
    assert decode_images(root, paths, 10, cache_dir=cache).from_cache is False

    # a newer mtime invalidates
    target = root / "a" / "good1.png"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert decode_images(root, paths, 12, cache_dir=cache).from_cache is False
    assert decode_images(root, paths, 12, cache_dir=cache).from_cache is True

    # a different file size with the same mtime invalidates too
    st = target.stat()
    _noise_image(9, (50, 40)).save(target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert target.stat().st_size != st.st_size
    changed = decode_images(root, paths, 12, cache_dir=cache)
    assert changed.from_cache is False
    assert not np.array_equal(changed.images[0], first.images[0])

    assert set(_snapshot(root)) == set(before)  # nothing added to the dataset folder
    assert not list(root.rglob("*.npz"))


def test_cache_corrupt_file_is_ignored(mixed: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, paths = mixed
    cache = tmp_path / "cache"
    first = decode_images(root, paths, 12, cache_dir=cache)
    (cache_file,) = cache.iterdir()
    cache_file.write_bytes(b"this is not an npz file")
    again = decode_images(root, paths, 12, cache_dir=cache)
    assert again.from_cache is False
    np.testing.assert_array_equal(again.images, first.images)
    assert again.skipped == first.skipped
    third = decode_images(root, paths, 12, cache_dir=cache)  # the cache was rewritten
    assert third.from_cache is True
    np.testing.assert_array_equal(third.images, first.images)


def test_cache_truncated_file_is_ignored(mixed: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, paths = mixed
    cache = tmp_path / "cache"
    decode_images(root, paths, 12, cache_dir=cache)
    (cache_file,) = cache.iterdir()
    data = cache_file.read_bytes()
    cache_file.write_bytes(data[: len(data) // 2])
    assert decode_images(root, paths, 12, cache_dir=cache).from_cache is False


def test_cache_never_written_into_root(mixed: tuple[Path, list[str]]) -> None:
    root, paths = mixed
    before = _snapshot(root)
    with pytest.warns(UserWarning, match="not writing the decode cache"):
        result = decode_images(root, paths, 12, cache_dir=root / ".cache")
    assert result.from_cache is False
    assert _snapshot(root) == before
    assert not (root / ".cache").exists()


def test_cache_version_constant() -> None:
    assert isinstance(DECODE_VERSION, int) and DECODE_VERSION >= 1


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NOISYCLEAN_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("NOISYCLEAN_CACHE_DIR")
    assert default_cache_dir() == tmp_path / "xdg" / "noisyclean"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "noisyclean"


# --------------------------------------------------------------------------- probe_image_size


def test_probe_image_size_median(tmp_path: Path) -> None:
    Image.new("RGB", (10, 50)).save(tmp_path / "a.png")  # shorter side 10
    Image.new("RGB", (40, 20)).save(tmp_path / "b.png")  # 20
    Image.new("RGB", (30, 30)).save(tmp_path / "c.jpg")  # 30
    (tmp_path / "d.png").write_text("broken")
    assert probe_image_size(tmp_path, ["a.png", "b.png", "c.jpg", "d.png", "gone.png"]) == 20
    assert probe_image_size(tmp_path, ["a.png", "b.png"]) == 15


def test_probe_image_size_sampling(tmp_path: Path) -> None:
    names = []
    for i, side in enumerate([10, 11, 12, 13, 100]):
        Image.new("L", (side, side + 5)).save(tmp_path / f"{i}.png")
        names.append(f"{i}.png")
    assert probe_image_size(tmp_path, names) == 12
    assert probe_image_size(tmp_path, names, sample=2) == 55  # first and last: (10 + 100) / 2


def test_probe_image_size_none(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"")
    assert probe_image_size(tmp_path, ["x.png"]) is None
    assert probe_image_size(tmp_path, []) is None


def test_probe_counts_images_with_one_side_over_twice_the_other(tmp_path: Path) -> None:
    for name, size in {"a.png": (30, 10), "b.png": (10, 21), "c.png": (20, 10),
                       "d.png": (12, 12)}.items():
        Image.new("RGB", size).save(tmp_path / name)
    (tmp_path / "e.png").write_text("broken")
    probe = probe_images(tmp_path, ["a.png", "b.png", "c.png", "d.png", "e.png"])
    assert (probe.side, probe.opened, probe.elongated) == (10, 4, 2)  # 3:1 and 2.1:1, not 2:1
    assert probe.long_side == 20  # the median of 30, 21, 20, 12 (20.5, rounded to even)


def test_scan_says_when_photos_are_shrunk_and_warns_of_panoramas(tmp_path: Path) -> None:
    """The automatic side stops at 64 px for the small CNN: a scan of larger images says
    so, with the way to more detail; where some images are panoramas, of which the centre
    crop keeps a small part, it warns."""
    from typer.testing import CliRunner

    from noisyclean.cli import app

    rng = np.random.default_rng(0)
    for c, cls in enumerate(("sea", "sky")):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(8):
            size = (400, 130) if i < 2 else (140, 130)  # two panoramas per class
            pixels = rng.integers(0, 80, (size[1], size[0], 3)) + 150 * c
            Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "data" / cls / f"{i}.png")
    args = ["scan", str(tmp_path / "data"), "--epochs", "1", "--width", "8", "--no-cache",
            "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, args)
    text = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert "the images' shorter sides are about 130 px; they train at 64 px" in text
    assert ("4 of 16 images looked at have one side more than 2 times the other: each image "
            "is cropped to its centre square") in text
    given = CliRunner().invoke(app, [*args, "--image-size", "32", "--out", str(tmp_path / "o2")])
    assert given.exit_code == 0, given.output
    assert "shorter sides are about" not in given.output  # the user chose the side
    assert "4 of 16 images" in " ".join(given.output.split())
    assert "(--resize pad or --resize squash keeps all of it)" in " ".join(given.output.split())
    padded = CliRunner().invoke(app, [*args, "--resize", "pad", "--out", str(tmp_path / "o3")])
    assert padded.exit_code == 0, padded.output
    assert "cropped to its centre" not in padded.output  # nothing is cropped
    assert "16 images, 2 classes, 64x64 px (pad)," in " ".join(padded.output.split())
    # the automatic side is the longer one's where the whole image is kept
    assert "the images' longer sides are about 140 px; they train at 64 px" in " ".join(
        padded.output.split())
    summary = json.loads((tmp_path / "o3" / "summary.json").read_text())
    assert summary["settings"]["resize"] == "pad"


def test_the_automatic_side_follows_the_resize_mode(tmp_path: Path) -> None:
    """24x12 images: cropped, the shorter side (12, so 16 px); padded or squashed, the
    whole image is kept and the longer side (24 px) sets the side, so it is not shrunk."""
    from noisyclean.data.load import load_dataset

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (12, 24, 3), dtype=np.uint8)).save(
                tmp_path / "data" / c / f"{i}.png")
    sides = {mode: load_dataset(tmp_path / "data", use_cache=False, resize=mode).image_size
             for mode in ("crop", "pad", "squash")}
    assert sides == {"crop": 16, "pad": 24, "squash": 24}
