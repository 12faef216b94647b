"""How much the wide-view batch norm (``noisyclean.norm.ChannelsLastBatchNorm2d``) saves on
this CPU, against ``nn.BatchNorm2d``.

Two measurements, each alternating the two norms in one process (so that a machine whose
speed drifts in phases slows both alike):

1. one norm layer alone, forward and backward over a channels-last ``(64, C, 32, 32)``
   tensor, for C = 24 (the small CNN's first two layers) and 48;
2. training steps of the small CNN (width 24) as the scan takes them: device-side
   augmented batches of random images, cross-entropy, SGD, at 32 px in batches of 64 and
   128, at 24 px in 64 and at 16 px in 128.

Prints markdown tables (milliseconds for the layer; seconds per pass of ``--images``
images for the steps, and the wide/plain ratio of each round, median, min and max).

    python benchmarks/batch_norm_view.py [--precision bf16|fp32] [--rounds 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from noisyclean.data.batches import DeviceImages
from noisyclean.models import build_model
from noisyclean.norm import ChannelsLastBatchNorm2d, with_plain_norms
from noisyclean.train.loop import Precision, make_learner

KINDS = ("plain", "wide")


def layer_times(dtype: torch.dtype, rounds: int) -> list[str]:
    """Median forward + backward milliseconds of one norm layer, plain and wide."""
    rows = []
    for channels in (24, 48):
        x0 = torch.randn(64, channels, 32, 32).to(dtype)
        x0 = x0.contiguous(memory_format=torch.channels_last)
        grad = torch.randn_like(x0)
        norms = {"plain": nn.BatchNorm2d(channels), "wide": ChannelsLastBatchNorm2d(channels)}
        times: dict[str, list[float]] = {k: [] for k in KINDS}
        for r in range(rounds * 3):
            for kind in KINDS if r % 2 == 0 else KINDS[::-1]:
                x = x0.clone().requires_grad_(True)
                start = time.perf_counter()
                norms[kind](x).backward(grad)
                times[kind].append(time.perf_counter() - start)
        plain, wide = (1e3 * float(np.median(times[k])) for k in KINDS)
        used = "wide view" if norms["wide"]._widening_for(x0) else "PyTorch's kernel"
        rows.append(f"| {channels} | {plain:.2f} | {wide:.2f} | {wide / plain:.2f} | {used} |")
    return rows


def step_times(precision: Precision, rounds: int, images: int) -> list[str]:
    """Seconds per pass of ``images`` training images, plain and wide, alternated."""
    n = 4096
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    data = DeviceImages(pixels, rng.integers(0, 10, n), torch.device("cpu"),
                        channels_last=True)
    generator = torch.Generator().manual_seed(0)
    learners = {}
    for kind in KINDS:
        torch.manual_seed(0)
        model = build_model("small-cnn", 10, None, 24)
        if kind == "plain":
            with_plain_norms(model)
        learners[kind] = make_learner(model.train(), 0.05, 0.9, 5e-4, 10**6)

    def one_pass(kind: str, batch: int, side: int) -> float:
        learner = learners[kind]
        start = time.perf_counter()
        for _ in range(images // batch):
            idx = torch.randint(0, n, (batch,), generator=generator)
            x = data.batch(idx, augment=True, generator=generator)
            if side == 16:
                x = F.avg_pool2d(x, 2)
            elif side != 32:
                x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True,
                                  align_corners=False)
            with precision.autocast():
                loss = F.cross_entropy(learner.model(x).float(), data.labels[idx])
            learner.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            learner.optimizer.step()
            loss.item()
        return time.perf_counter() - start

    rows = []
    for batch, side in ((64, 32), (128, 32), (64, 24), (128, 16)):
        for kind in KINDS:
            one_pass(kind, batch, side)
        times: dict[str, list[float]] = {k: [] for k in KINDS}
        for r in range(rounds):
            for kind in KINDS if r % 2 == 0 else KINDS[::-1]:
                times[kind].append(one_pass(kind, batch, side))
        ratios = [w / p for w, p in zip(times["wide"], times["plain"], strict=True)]
        rows.append(
            f"| {side} px, batch {batch} | {np.median(times['plain']):.3f} | "
            f"{np.median(times['wide']):.3f} | {np.median(ratios):.3f} | "
            f"{min(ratios):.3f}-{max(ratios):.3f} |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--images", type=int, default=1920)
    args = parser.parse_args(argv)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    precision = Precision(torch.device("cpu"), dtype if args.precision == "bf16" else None)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.precision}")
    print("\n| channels | plain (ms) | wide (ms) | ratio | wide module uses |")
    print("|---|---|---|---|---|")
    print("\n".join(layer_times(dtype, args.rounds)))
    print(f"\n| steps | plain (s per {args.images} images) | wide | ratio, median | range |")
    print("|---|---|---|---|---|")
    print("\n".join(step_times(precision, args.rounds, args.images)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
