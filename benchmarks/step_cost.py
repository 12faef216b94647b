"""What a training step of the small CNN costs on this machine: a fixed part per step and a
part per image, at each image side the scan trains at, and what that makes of the scan's
warm-up schedule against the plain recipe's.

Real warm-up epochs (``Warmup`` through ``run_epochs``: device-side augmented batches of
32-px images, random or a folder's, cross-entropy, SGD, the device's default precision,
channels-last as the scan) are timed at several batch sizes for each side (16 px by
average pooling, 24 px by the antialiased resize, as the scan's first epochs). The rounds
alternate over all the (side, batch) pairs, so that a machine whose speed drifts in phases
slows each alike. A line through each side's seconds per step against the batch size gives
the fixed part (the intercept) and the part per image (the slope), fitted on the batches
up to 64 (at 32 px a batch of 128 cost twice a batch of 64 or more, off the line through
the smaller ones).

Each schedule's time is its steps times the measured seconds per step of its (side,
batch), and its fixed part its steps times the fitted intercept: the default scan's
warm-up at 10,000 images, as the library plans it (``progressive_schedule`` of the budget,
batches by ``RESIZED_BATCH_FACTORS``: now 6 epochs at 16 px in batches of 128, 5 at 24 px
in 64, 10 at 32 px in 64) and the plain recipe's (``detect.py``'s: 15 epochs at 32 px in
128).

    python benchmarks/step_cost.py [--rounds 3] [--steps 40] [--folder IMAGES]

``--folder``: an image folder to train on (e.g. one written by ``make_noisy.py``), decoded
as the scan decodes it; default: random images.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from detect import DIVIDEMIX_WARMUP_BATCH  # the sibling script's

from noisyclean import hold_freed_memory
from noisyclean.config import RESIZED_BATCH_FACTORS, ScanConfig
from noisyclean.data.batches import DeviceImages
from noisyclean.models import build_model
from noisyclean.progress import Progress
from noisyclean.scanning import auto_epochs, progressive_schedule
from noisyclean.train.loop import Precision, make_learner, run_epochs
from noisyclean.train.methods.warmup import Warmup

SIDES = (16, 24, 32)
BATCHES = (8, 32, 64, 128)
#: the batches the line is fitted on
FIT_BATCHES = (8, 32, 64)
IMAGES = 10_000
#: the scan's default ``--resized-batches`` (the resized epochs' batches, as multiples of
#: its batch)
RESIZED = ScanConfig().resized_batches


def schedules() -> dict[str, tuple[tuple[int, int, int], ...]]:
    """(side, batch, epochs) of the default scan's warm-up and of the plain recipe at
    :data:`IMAGES` images, as the library and ``detect.py`` plan them."""
    budget = auto_epochs(IMAGES)
    plan = progressive_schedule(budget)
    batch = ScanConfig().batch_size
    half, three_quarters = RESIZED_BATCH_FACTORS[RESIZED]
    return {
        f"default scan ({plan.low_res} + {plan.mid_res} + {plan.epochs})": (
            (16, half * batch, plan.low_res), (24, three_quarters * batch, plan.mid_res),
            (32, batch, plan.epochs)),
        f"plain recipe ({budget} at 32 px)": ((32, DIVIDEMIX_WARMUP_BATCH, budget),),
    }


def epoch_seconds(data: DeviceImages, precision: Precision, side: int, batch: int,
                  steps: int, seed: int, classes: int = 10) -> float:
    """Seconds per step of one warm-up epoch of ``steps`` steps of ``batch`` images at
    ``side`` px (16 and 24 px as the scan resizes, with its default ``--resized-batches``)."""
    low, mid = int(side == 16), int(side == 24)
    stage = 0 if low else 1 if mid else None  # index into the (half, three quarters) factors
    factor = 1 if stage is None else RESIZED_BATCH_FACTORS[RESIZED][stage]
    indices = torch.arange(batch * steps) % len(data)
    method = Warmup(data, 1, batch // factor, seed, indices=indices, low_res_epochs=low,
                    mid_res_epochs=mid, resized_batches=RESIZED)
    assert method.batch_size_at(0) == batch
    torch.manual_seed(seed)
    model = build_model("small-cnn", classes, None, 24).to(memory_format=torch.channels_last)
    learner = make_learner(model, 0.05, 0.9, 5e-4, 10 * steps)
    run_epochs([learner], method, range(1), precision, Progress(quiet=True))  # warm
    start = time.perf_counter()
    log = run_epochs([learner], method, range(1), precision, Progress(quiet=True))
    seconds = time.perf_counter() - start
    assert log[0]["images_per_s"] > 0
    return seconds / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per epoch")
    parser.add_argument("--folder", type=Path, help="32-px images to train on")
    args = parser.parse_args()

    hold_freed_memory()  # as the command line trains (glibc's malloc keeps freed memory)
    device = torch.device("cpu")
    precision = Precision.choose(device, None)
    if args.folder is None:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (4096, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, 4096)
        data = DeviceImages(images, labels, device, channels_last=True)
    else:
        from noisyclean.data.load import load_dataset

        data = load_dataset(args.folder, device="cpu", model="small-cnn").data
        if data.height != 32:
            raise SystemExit(f"{args.folder}: the schedules are for 32-px images")
    classes = int(data.labels.max()) + 1
    grid = [(side, batch) for side in SIDES for batch in BATCHES]
    # and any (side, batch) a schedule steps on that the grid lacks
    needed = sorted({(side, batch) for schedule in schedules().values()
                     for side, batch, _ in schedule} - set(grid))
    pairs = grid + needed
    times: dict[tuple[int, int], list[float]] = {pair: [] for pair in pairs}
    for r in range(args.rounds):
        for side, batch in pairs if r % 2 == 0 else pairs[::-1]:
            times[(side, batch)].append(epoch_seconds(
                data, precision, side, batch, args.steps, seed=r, classes=classes))

    name = precision.dtype and str(precision.dtype).replace("torch.", "") or "float32"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {name}, "
          f"{args.rounds} rounds of {args.steps} steps\n")
    print("| side | " + " | ".join(f"batch {b}" for b in BATCHES)
          + " | fixed ms/step | ms/image |")
    print("|---|" + "---|" * (len(BATCHES) + 2))
    fixed: dict[int, float] = {}
    step_ms = {pair: 1000 * float(np.median(values)) for pair, values in times.items()}
    for side in SIDES:
        slope, intercept = np.polyfit(FIT_BATCHES, [step_ms[(side, b)] for b in FIT_BATCHES], 1)
        fixed[side] = intercept
        print(f"| {side} px | " + " | ".join(f"{step_ms[(side, b)]:.2f}" for b in BATCHES)
              + f" | {intercept:.2f} | {slope:.3f} |")
    print(f"\n(cells: milliseconds per step, median over the rounds; the line fitted on "
          f"batches {', '.join(map(str, FIT_BATCHES))})")
    for side, batch in needed:
        print(f"also measured, for a schedule: {side} px in batches of {batch}: "
              f"{step_ms[(side, batch)]:.2f} ms per step")
    print()
    print("| schedule | steps | training s | of which fixed per step |")
    print("|---|---|---|---|")
    for label, schedule in schedules().items():
        steps = seconds = fixed_s = 0.0
        for side, batch, epochs in schedule:
            n = epochs * (IMAGES // batch)
            steps += n
            seconds += n * step_ms[(side, batch)] / 1000
            fixed_s += n * fixed[side] / 1000
        print(f"| {label} | {int(steps)} | {seconds:.1f} | {fixed_s:.1f} |")


if __name__ == "__main__":
    main()
