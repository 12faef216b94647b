"""Pack CIFAR-10's training images small enough to travel to a lent GPU machine, and unpack
them there into a data folder ``make_noisy.py --data-dir`` reads.

    python benchmarks/pack_cifar.py pack --out .gpu/data [--n 30000]
    python benchmarks/pack_cifar.py unpack .gpu/data --out /tmp/data

The device tool sends the working tree and nothing beside it (``../shared`` stays behind),
at most 64 MiB a call, and ``../shared/data/cifar10.npz`` alone is 114 MB. ``pack`` writes
the first ``--n`` training images (default: all 30,000 the data file holds) as lossless
WebP, about 1.5 KB an image (45 MiB for 30,000, where PNG takes 66 MiB), into
``OUT/cifar10-train.npz``: the images' bytes end to end (``webp``), where each one ends
(``ends``), the labels (``y_train``) and the SHA-256 of the pixel array (``sha256``).
CIFAR-10N's labels (``cifar10n_labels.npz``, 0.2 MB) are copied beside it.

``unpack`` decodes every image, checks that the pixels' SHA-256 is the one packed (WebP's
lossless mode gives back the very pixels; a mismatch stops it), and writes
``OUT/cifar10.npz`` with ``x_train``, ``y_train`` and empty ``x_test`` / ``y_test`` (no
test images travel), plus the copy of ``cifar10n_labels.npz``. ``make_noisy.py
--data-dir OUT`` then writes the same folders as from ``../shared/data``, and ``--n all``
is every packed image (``noise.json``'s ``train_size`` is the packed count).

``benchmarks/gpu_full.sh`` runs ``unpack`` on the GPU machine.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PACKED = "cifar10-train.npz"
HUMAN = "cifar10n_labels.npz"


def pixels_sha256(x: np.ndarray) -> str:
    """SHA-256 of a uint8 pixel array's C-order bytes, with its shape in front."""
    x = np.ascontiguousarray(x, dtype=np.uint8)
    digest = hashlib.sha256(str(x.shape).encode())
    digest.update(x.tobytes())
    return digest.hexdigest()


def encode(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lossless WebP bytes of each ``(H, W, 3)`` uint8 image of ``x``, end to end, and the
    offset where each image's bytes end."""
    chunks, ends, total = [], [], 0
    for image in x:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "WEBP", lossless=True, quality=100, method=4)
        chunks.append(buffer.getvalue())
        total += len(chunks[-1])
        ends.append(total)
    return np.frombuffer(b"".join(chunks), dtype=np.uint8), np.array(ends, dtype=np.int64)


def decode(webp: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The ``(n, H, W, 3)`` uint8 images :func:`encode` packed."""
    data = webp.tobytes()
    starts = np.concatenate([[0], ends[:-1]])
    images = [np.asarray(Image.open(io.BytesIO(data[a:b])).convert("RGB"))
              for a, b in zip(starts, ends, strict=True)]
    return np.stack(images) if images else np.zeros((0, 32, 32, 3), dtype=np.uint8)


def pack(data_dir: Path, out: Path, n: int | None = None) -> Path:
    """Write ``out/cifar10-train.npz`` (the first ``n`` training images, all by default)
    and a copy of ``cifar10n_labels.npz``; return the packed file's path."""
    with np.load(data_dir / "cifar10.npz") as arrays:
        x = arrays["x_train"] if n is None else arrays["x_train"][:n]
        y = arrays["y_train"] if n is None else arrays["y_train"][:n]
    webp, ends = encode(x)
    out.mkdir(parents=True, exist_ok=True)
    path = out / PACKED
    np.savez(path, webp=webp, ends=ends, y_train=np.asarray(y, dtype=np.int64),
             sha256=np.array(pixels_sha256(x)))
    shutil.copyfile(data_dir / HUMAN, out / HUMAN)
    return path


def unpack(packed: Path, out: Path) -> Path:
    """Decode ``packed/cifar10-train.npz``, check its pixels' SHA-256, write
    ``out/cifar10.npz`` and copy ``cifar10n_labels.npz``; return the written file's path.

    Raises:
        SystemExit: when the decoded pixels differ from those packed.
    """
    with np.load(packed / PACKED) as arrays:
        x = decode(arrays["webp"], arrays["ends"])
        y, expected = arrays["y_train"], str(arrays["sha256"])
    if pixels_sha256(x) != expected:
        raise SystemExit(f"error: {packed / PACKED} decoded to other pixels than were packed")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "cifar10.npz"
    np.savez(path, x_train=x, y_train=y, x_test=np.zeros((0, *x.shape[1:]), dtype=np.uint8),
             y_test=np.zeros(0, dtype=np.int64))
    shutil.copyfile(packed / HUMAN, out / HUMAN)
    return path


def main(argv: list[str] | None = None) -> int:
    """``pack`` or ``unpack``, as the module docstring says."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    packing = verbs.add_parser("pack", help="pack ../shared/data's CIFAR-10 training images")
    packing.add_argument("--data-dir", type=Path, default=DATA)
    packing.add_argument("--out", type=Path, required=True)
    packing.add_argument("--n", type=int, default=None, help="the first n images (default all)")
    unpacking = verbs.add_parser("unpack", help="unpack into a folder make_noisy.py reads")
    unpacking.add_argument("packed", type=Path, help="the folder pack wrote")
    unpacking.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.verb == "pack":
        if not (args.data_dir / "cifar10.npz").is_file():
            raise SystemExit(f"error: {args.data_dir / 'cifar10.npz'} not found")
        path = pack(args.data_dir, args.out, args.n)
    else:
        path = unpack(args.packed, args.out)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
