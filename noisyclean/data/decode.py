"""Decode every image once into one uint8 array ``(N, size, size, 3)``.

Each image is opened with Pillow, turned upright (EXIF orientation), converted to 8-bit RGB
(alpha composited over white) and made square at side ``size``
(:data:`~noisyclean.config.RESIZE_MODES`: by default scaled so its shorter side is ``size``
and centre-cropped). Files that cannot be decoded are skipped with a short reason; the run
goes on.

The result can be cached on disk (never inside the dataset folder): the cache key covers
:data:`DECODE_VERSION`, ``size``, the resize mode, the resolved dataset folder and every
file's relative path, size, modification and change times, device and inode
(:func:`cache_key`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..config import RESIZE_MODES

DECODE_VERSION: int = 2
"""Version of the decoding recipe; bump it whenever decoding output changes (cache key)."""

MAX_PIXELS: int = 89_478_485
"""Images with more pixels than this (width * height) are skipped as decompression bombs.

It is Pillow's default ``Image.MAX_IMAGE_PIXELS``, where Pillow emits its
``DecompressionBombWarning`` (it raises ``DecompressionBombError`` itself at twice that). The
warning is silenced while decoding and this limit is checked per image instead, because
``warnings.catch_warnings`` cannot be used per thread. It does not follow later changes to
``Image.MAX_IMAGE_PIXELS``.
"""

REASON_EMPTY = "empty file (0 bytes)"
REASON_NOT_IMAGE = "not an image (cannot identify image file)"
REASON_TOO_LARGE = "image too large (decompression bomb)"
REASON_CORRUPT = "truncated or corrupt image: "  # + Pillow's message
REASON_UNREADABLE = "unreadable: "  # + the operating system's message

RESAMPLE = Image.Resampling.BILINEAR
"""Resampling filter. Pillow's BILINEAR widens its support when downscaling (antialiased)."""
REDUCING_GAP = 3.0
"""Pillow ``reducing_gap``: large downscales first box-reduce by an integer factor (fast)."""

_BLOCK = 64  # images per worker task (at most)



def _quiet_pillow() -> None:
    """Silence, until the enclosing ``warnings.catch_warnings()`` ends, the warnings Pillow
    gives while decoding: :class:`~PIL.Image.DecompressionBombWarning` (:data:`MAX_PIXELS`
    is checked per image instead) and its ``UserWarning``s about what it skips in an image
    it still decodes (``Corrupt EXIF data``, a malformed MPO or APNG, ...). Neither is the
    user's business: an image that cannot be decoded raises and is skipped with a reason.

    The filters are process-wide (``catch_warnings`` cannot be used per thread), so they
    also hold in the decoding threads started inside the block.
    """
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL(\.|$)")


class ImageTooLargeError(ValueError):
    """An image has more than :data:`MAX_PIXELS` pixels."""


def default_cache_dir() -> Path:
    """Where decoded images are cached unless the user says otherwise.

    Returns:
        ``$NOISYCLEAN_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/noisyclean`` (when
        ``XDG_CACHE_HOME`` is an absolute path), else ``~/.cache/noisyclean``.
    """
    explicit = os.environ.get("NOISYCLEAN_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "noisyclean"
    return Path.home() / ".cache" / "noisyclean"


#: A side more than this many times the other: the centre square leaves most of the image
#: out (a third or less of a 3:1 panorama), which a scan warns of.
ELONGATED_RATIO = 2.0


@dataclass
class ImageProbe:
    """What the headers of a sample of a dataset's images say.

    Attributes:
        side: the median shorter side in pixels (rounded), None if no sampled image opens.
        opened: how many sampled images opened.
        elongated: how many of those have one side more than :data:`ELONGATED_RATIO` times
            the other.
        long_side: the median longer side in pixels (rounded), None as ``side``.
    """

    side: int | None
    opened: int
    elongated: int
    long_side: int | None = None


def probe_images(root: Path, paths: list[str], sample: int = 64) -> ImageProbe:
    """Read the headers (no full decode) of ``sample`` images evenly spaced over ``paths``
    (all of them where there are fewer): their median shorter and longer sides, and how
    many are elongated."""
    if not paths or sample < 1:
        return ImageProbe(None, 0, 0)
    if len(paths) <= sample:
        picks = range(len(paths))
    else:
        picks = np.unique(np.linspace(0, len(paths) - 1, sample).round().astype(np.int64))
    sizes: list[tuple[int, int]] = []
    with warnings.catch_warnings():
        _quiet_pillow()
        for i in picks:
            try:
                with Image.open(Path(root) / paths[int(i)]) as img:
                    sizes.append(img.size)
            except Exception:  # any file that does not open is just not counted
                continue
    if not sizes:
        return ImageProbe(None, 0, 0)
    short = np.array([min(size) for size in sizes], dtype=np.float64)
    long = np.array([max(size) for size in sizes], dtype=np.float64)
    return ImageProbe(int(round(float(np.median(short)))), len(sizes),
                      int(np.sum(long > ELONGATED_RATIO * short)),
                      int(round(float(np.median(long)))))


def probe_image_size(root: Path, paths: list[str], sample: int = 64) -> int | None:
    """Typical image size of a dataset, read from image headers only (no full decode).

    Args:
        root: the dataset root.
        paths: image paths relative to ``root``.
        sample: how many images to look at, evenly spaced over ``paths``.

    Returns:
        The median shorter side in pixels (rounded to an int) of the sampled images that
        open, or None if none of them opens.
    """
    return probe_images(root, paths, sample).side


def _gray_to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale a 2-D int/float array's finite min..max to 0..255 (constant -> zeros)."""
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, dtype=np.uint8)
    low = float(values[finite].min())
    high = float(values[finite].max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    values = np.where(finite, values, low)
    scaled = (values - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert a loaded image of any mode to an 8-bit ``RGB`` (or ``L``) image."""
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        # 16-bit as 32-bit integers and floats: the same values decode the same in any file
        # format, and 10- to 14-bit data in a 16-bit PNG (microscopy, X-rays) keeps its
        # range, which the high byte alone would crush to 4-64 grey levels
        return Image.fromarray(_gray_to_uint8(np.asarray(img)), mode="L")
    if mode == "1":
        return img.convert("L")
    bands = img.getbands()
    if "A" in bands or "a" in bands or "transparency" in img.info:
        rgba = img.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    if mode in ("RGB", "L"):
        return img
    return img.convert("RGB")


def decode_image(path: str | Path, size: int, resize: str = "crop") -> np.ndarray:
    """Decode one image file to a ``(size, size, 3)`` uint8 RGB array.

    Steps: open with Pillow (first frame of multi-frame files); check the pixel count against
    :data:`MAX_PIXELS`; for JPEG, let libjpeg decode at a reduced scale (1/2, 1/4 or 1/8) that
    still leaves the shorter side >= ``size``; fully load (so truncated files raise); apply
    the EXIF orientation (a malformed EXIF block is ignored); convert to RGB (see below);
    make it ``size x size`` as ``resize`` says, in one Pillow ``resize`` with
    :data:`RESAMPLE` (bilinear, antialiased when downscaling) and ``reducing_gap``
    :data:`REDUCING_GAP`: ``crop`` scales the centred square region (the shorter side
    becomes ``size``); ``pad`` scales the whole image so its longer side is ``size`` (the
    shorter at least 1 px) and centres it on black; ``squash`` scales the whole image to
    ``size x size``. Small images are upscaled the same way.

    Mode conversion: ``I;16*``, ``I`` and ``F`` scale their finite min..max to 0..255 (a
    constant image gives zeros; so a 12-bit image in a 16-bit PNG keeps its range); ``1``
    gives 0/255; images with alpha (``RGBA``, ``LA``, ``PA``, ``P`` or ``RGB``/``L`` with a
    transparency key) are composited over white; every other mode (``CMYK``, ``YCbCr``,
    ``LAB``, ``HSV``, ``P``...) uses Pillow's own conversion to RGB.

    Args:
        path: the image file; it is only read.
        size: side of the output square, in pixels (>= 1).
        resize: one of :data:`RESIZE_MODES`.

    Returns:
        A C-contiguous uint8 array of shape ``(size, size, 3)``.

    Raises:
        ImageTooLargeError: more than :data:`MAX_PIXELS` pixels.
        Exception: whatever Pillow or the OS raises for a file that cannot be decoded
            (``UnidentifiedImageError``, ``OSError``, ``SyntaxError``, ...).
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    with Image.open(path) as img:
        width, height = img.size
        if width * height > MAX_PIXELS:
            raise ImageTooLargeError(f"{width}x{height} pixels")
        if width < 1 or height < 1:
            raise ValueError(f"image has no pixels ({width}x{height})")
        if img.format == "JPEG":
            img.draft(None, (size, size))
        img.load()
        try:
            ImageOps.exif_transpose(img, in_place=True)
        except Exception:  # malformed EXIF: use the image as stored
            pass
        rgb = _to_rgb(img)
        width, height = rgb.size
        if resize == "crop":
            side = min(width, height)
            left = (width - side) / 2
            top = (height - side) / 2
            out = rgb.resize(
                (size, size),
                RESAMPLE,
                box=(left, top, left + side, top + side),
                reducing_gap=REDUCING_GAP,
            )
        elif resize == "squash":
            out = rgb.resize((size, size), RESAMPLE, reducing_gap=REDUCING_GAP)
        else:
            scale = size / max(width, height)
            inner = (max(1, round(width * scale)), max(1, round(height * scale)))
            out = Image.new(rgb.mode, (size, size))  # black
            out.paste(rgb.resize(inner, RESAMPLE, reducing_gap=REDUCING_GAP),
                      ((size - inner[0]) // 2, (size - inner[1]) // 2))
        if out.mode != "RGB":
            out = out.convert("RGB")
        return np.ascontiguousarray(np.asarray(out, dtype=np.uint8))


def skip_reason(error: BaseException) -> str:
    """Turn an exception raised while decoding one file into a short, stable skip reason.

    Args:
        error: the exception.

    Returns:
        One of :data:`REASON_NOT_IMAGE`, :data:`REASON_TOO_LARGE`,
        ``REASON_UNREADABLE + <OS message>`` (file-system errors such as permission denied) or
        ``REASON_CORRUPT + <Pillow message>`` (everything else).
    """
    if isinstance(error, UnidentifiedImageError):
        return REASON_NOT_IMAGE
    if isinstance(error, ImageTooLargeError | Image.DecompressionBombError):
        return REASON_TOO_LARGE
    if isinstance(error, MemoryError):
        return REASON_TOO_LARGE
    if isinstance(error, OSError) and error.errno is not None:
        return REASON_UNREADABLE + (error.strerror or type(error).__name__)
    message = " ".join(str(error).split()) or type(error).__name__
    return REASON_CORRUPT + message


def _decode_block(
    root: Path, paths: Sequence[str], indices: range, size: int, out: np.ndarray,
    resize: str = "crop",
) -> list[tuple[int, str | None]]:
    """Decode ``paths[i]`` for ``i`` in ``indices`` into ``out[i]``; return ``(i, reason)``."""
    results: list[tuple[int, str | None]] = []
    for i in indices:
        path = root / paths[i]
        try:
            if os.stat(path).st_size == 0:
                results.append((i, REASON_EMPTY))
                continue
            out[i] = decode_image(path, size, resize)
            results.append((i, None))
        except Exception as error:
            results.append((i, skip_reason(error)))
    return results


@dataclass
class DecodedImages:
    """The decoded images of a dataset and the files that were skipped.

    Attributes:
        images: ``(n_ok, size, size, 3)`` uint8, C-contiguous; ``images[j]`` is the file
            ``paths[ok[j]]``.
        ok: int64 indices into the input ``paths`` of the files that decoded, ascending.
        skipped: ``(relative path, reason)`` for each file that failed, in input order.
        size: side of the square images, in pixels.
        from_cache: whether the result was loaded from the on-disk cache.
    """

    images: np.ndarray
    ok: np.ndarray
    skipped: list[tuple[str, str]]
    size: int
    from_cache: bool


def cache_key(root: Path, paths: Sequence[str], size: int, resize: str = "crop") -> str:
    """The cache key of a decode: sha256 (hex) over the recipe, the dataset folder and every
    file's identity.

    A cache hit hands back pixels without opening a file, so the key must change whenever
    a file could hold other pixels: a hit on another folder's images, or on a file's old
    content, is a wrong result, while a needless miss only costs a decode. So the key holds
    the resolved dataset folder (two folders with the same relative paths, sizes and times,
    as archives extracted with their stored times give, are two keys) and, per file, what
    ``os.stat`` (following symbolic links) says of the file itself: its size, its
    modification time, its change time (``st_ctime_ns``, which the system sets on every
    write, rename or ``utime``; a program cannot set it back) and its device and inode
    (another file put in its place, or a link pointed at another file). A folder moved or
    copied elsewhere, or files whose status changed (``chmod``, a new hard link), are
    decoded again.

    Args:
        root: the dataset root; its resolved path is part of the key.
        paths: the relative paths, in order.
        size: the output image side.

    Returns:
        A 64-character hex digest over :data:`DECODE_VERSION`, ``size``, the resize mode, the
        resolved root and, per path, the relative path, ``st_size``, ``st_mtime_ns``,
        ``st_ctime_ns``, ``st_dev`` and ``st_ino`` (``-1`` each for a file that cannot be
        ``stat``-ed).
    """
    root = Path(root).resolve()
    digest = hashlib.sha256()
    digest.update(f"noisyclean-decode\0{DECODE_VERSION}\0{size}\0{len(paths)}\n".encode())
    if resize != "crop":
        digest.update(f"resize\0{resize}\n".encode())
    digest.update(os.fsencode(root) + b"\n")
    for rel in paths:
        try:
            st = os.stat(root / rel)
            ident = f"{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_dev}\0{st.st_ino}"
        except OSError:
            ident = "-1\0-1\0-1\0-1\0-1"
        digest.update(f"{rel}\0{ident}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _load_cache(file: Path, paths: Sequence[str], size: int) -> DecodedImages | None:
    """Load a cache file; None when it is missing, unreadable or does not match."""
    try:
        with np.load(file, allow_pickle=False) as data:
            images = data["images"]
            ok = data["ok"].astype(np.int64)
            skipped_paths = [str(p) for p in data["skipped_paths"]]
            reasons = [str(r) for r in data["skipped_reasons"]]
    except Exception:
        return None
    n = len(paths)
    if (
        images.dtype != np.uint8
        or images.shape != (len(ok), size, size, 3)
        or ok.ndim != 1
        or len(skipped_paths) != len(reasons)
        or len(ok) + len(reasons) != n
        or (len(ok) and (ok.min() < 0 or ok.max() >= n or np.any(np.diff(ok) <= 0)))
    ):
        return None
    failed = np.setdiff1d(np.arange(n), ok)
    if [paths[i] for i in failed] != skipped_paths:
        return None
    return DecodedImages(
        images=np.ascontiguousarray(images),
        ok=ok,
        skipped=list(zip(skipped_paths, reasons, strict=True)),
        size=size,
        from_cache=True,
    )


def _save_cache(file: Path, result: DecodedImages) -> None:
    """Write a cache file atomically (temp file in the same folder, then ``os.replace``)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{file.stem}.", suffix=".tmp", dir=file.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(
                handle,
                images=result.images,
                ok=result.ok,
                skipped_paths=np.array([p for p, _ in result.skipped], dtype=str),
                skipped_reasons=np.array([r for _, r in result.skipped], dtype=str),
            )
        os.replace(tmp, file)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def decode_images(
    root: Path,
    paths: list[str],
    size: int,
    workers: int | None = None,
    cache_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    resize: str = "crop",
) -> DecodedImages:
    """Decode all images once, in parallel, into one uint8 array (or load it from the cache).

    Args:
        root: the dataset root; files are only read, nothing is ever written there.
        paths: image paths relative to ``root`` (e.g. ``Samples.paths``).
        size: side of the square output images, in pixels.
        workers: decoding threads; default ``min(8, os.cpu_count())``.
        cache_dir: folder for the on-disk cache (created if needed), or None for no cache.
            A cache folder inside ``root`` is only read, never written. A cache file that
            cannot be read is ignored (and rewritten); failing to write the cache only warns.
        progress: called from the calling thread with the number of images finished since
            its previous call (the counts add up to ``len(paths)``); on a cache hit it is
            called once with ``len(paths)``.
        warn: called with one line (no ``warning:`` prefix) when the cache is not written
            (a cache folder inside ``root``, or one that cannot be written); None: a Python
            ``UserWarning``. The CLI passes :meth:`~noisyclean.progress.Progress.warn`.
            Pillow's own warnings are silenced while decoding (an image it decodes is
            used; one it cannot decode is skipped with the reason).
        resize: how each image becomes a square (:data:`RESIZE_MODES`).

    Returns:
        The :class:`DecodedImages`. Failed files are listed in ``skipped`` with one of the
        ``REASON_*`` texts (see :func:`skip_reason`; zero-byte files give
        :data:`REASON_EMPTY`).
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    root = Path(root)
    n = len(paths)
    cache_file: Path | None = None
    if cache_dir is not None:
        cache_file = Path(cache_dir).expanduser() / f"{cache_key(root, paths, size, resize)}.npz"
        cached = _load_cache(cache_file, paths, size)
        if cached is not None:
            if progress is not None:
                progress(n)
            return cached

    images = np.empty((n, size, size, 3), dtype=np.uint8)
    reasons: dict[int, str] = {}
    if n:
        n_workers = max(1, workers if workers is not None else min(8, os.cpu_count() or 1))
        block = max(1, min(_BLOCK, n // (n_workers * 8)))
        blocks = [range(start, min(start + block, n)) for start in range(0, n, block)]
        with warnings.catch_warnings():
            _quiet_pillow()  # in the worker threads too
            executor = ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="decode")
            try:
                # Keep a bounded number of blocks in flight.
                pending: set[Future[list[tuple[int, str | None]]]] = set()
                queue = iter(blocks)
                for chunk in queue:
                    pending.add(executor.submit(_decode_block, root, paths, chunk, size,
                                                images, resize))
                    if len(pending) >= n_workers * 4:
                        break
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    finished = 0
                    for future in done:
                        for i, reason in future.result():
                            finished += 1
                            if reason is not None:
                                reasons[i] = reason
                        nxt = next(queue, None)
                        if nxt is not None:
                            pending.add(executor.submit(_decode_block, root, paths, nxt,
                                                        size, images, resize))
                    if progress is not None and finished:
                        progress(finished)
            finally:
                executor.shutdown(wait=True, cancel_futures=True)

    ok = np.array([i for i in range(n) if i not in reasons], dtype=np.int64)
    if len(ok) < n:
        # Compact in place (row j <- row ok[j], j <= ok[j]) and shrink without a second copy.
        for j, i in enumerate(ok.tolist()):
            if i != j:
                images[j] = images[i]
        images.resize((len(ok), size, size, 3), refcheck=False)
    result = DecodedImages(
        images=images,
        ok=ok,
        skipped=[(paths[i], reasons[i]) for i in sorted(reasons)],
        size=size,
        from_cache=False,
    )
    if cache_file is not None:
        problem = _write_cache(cache_file, result, root)
        if problem is not None:
            if warn is not None:
                warn(problem)
            else:
                warnings.warn(problem, stacklevel=2)
    return result


def _write_cache(file: Path, result: DecodedImages, root: Path) -> str | None:
    """Write the cache file; None when written, else why not (one line, for a warning)."""
    folder = file.parent
    folder_resolved, root_resolved = folder.resolve(), root.resolve()
    if folder_resolved == root_resolved or folder_resolved.is_relative_to(root_resolved):
        return f"not writing the decode cache into the dataset folder ({folder})"
    try:
        _save_cache(file, result)
    except OSError as error:
        blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            reason = ("it is a file, not a folder" if blocker == folder
                      else f"{blocker} is a file, not a folder")
        else:
            reason = error.strerror or str(error)
        return (f"could not write the decode cache in {folder} ({reason}); the images "
                "will be decoded again next time")
    return None
