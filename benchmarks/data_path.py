"""Benchmark: efficiency of the data path during warm-up.

efficiency = (images/s of a whole warm-up epoch through `run_epochs`, with device-side
batching, augmentation, normalisation and progress bars) / (images/s of the bare
forward + backward + optimiser step on the same batches, prepared beforehand).

Uses the first N CIFAR-10 training images from ../shared/data/cifar10.npz when present,
else scikit-learn's digits at 32 px.

    python benchmarks/data_path.py [--n 5000] [--model small-cnn] [--epochs 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from noisyclean.data.batches import DeviceImages
from noisyclean.device import resolve_device
from noisyclean.models import build_model
from noisyclean.progress import Progress
from noisyclean.train.loop import Precision, make_learner, run_epochs
from noisyclean.train.methods.warmup import Warmup

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_images(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    path = SHARED / "cifar10.npz"
    if path.exists():
        with np.load(path) as data:
            return data["x_train"][:n], data["y_train"][:n], f"CIFAR-10 train[:{n}]"
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    imgs = np.round(digits.images * 255 / 16).astype(np.uint8)[:n]
    big = np.stack([np.array(Image.fromarray(i).resize((32, 32)).convert("RGB")) for i in imgs])
    return big, digits.target[:n], f"digits[:{n}] at 32 px"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--model", default="small-cnn")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    images, labels, name = load_images(args.n)
    on_cuda = device.type == "cuda"
    data = DeviceImages(images, labels, device, channels_last=on_cuda)
    precision = Precision.choose(device, None)
    torch.manual_seed(0)
    model = build_model(args.model, 10).to(device)
    if on_cuda:
        model = model.to(memory_format=torch.channels_last)
    method = Warmup(data, batch_size=args.batch_size, seed=0)
    steps = method.steps_per_epoch(0)
    learner = make_learner(model, 0.05, 0.9, 5e-4, steps * (args.epochs + 1))

    # one untimed epoch warms up kernels and the allocator. Then, alternately: one whole
    # epoch through run_epochs, and the bare forward+backward+step on that epoch's batches,
    # built beforehand (same indices, same augmentation draws).
    run_epochs([learner], method, range(1), precision, Progress(quiet=True))
    opt = learner.optimizer
    loop_ips, bare_ips = [], []
    with Progress(quiet=False) as progress:
        for epoch in range(args.epochs):
            state = method.generator.get_state()
            log = run_epochs([learner], method, range(epoch, epoch + 1), precision, progress)
            loop_ips.append(log[0]["images_per_s"])
            method.generator.set_state(state)
            batches = [
                (data.batch(idx, augment=True, generator=method.generator),
                 data.labels[idx.to(device)])
                for _, idx in method.batches(epoch)
            ]
            if on_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            for x, y in batches:
                with precision.autocast():
                    loss = F.cross_entropy(model(x).float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if on_cuda:
                torch.cuda.synchronize()
            bare_ips.append(len(batches) * args.batch_size / (time.perf_counter() - start))
    loop_ips, bare_ips = float(np.mean(loop_ips)), float(np.mean(bare_ips))
    print(f"data: {name}, model {args.model}, batch {args.batch_size}, device {device}, "
          f"threads {torch.get_num_threads()}")
    print(f"whole warm-up epoch: {loop_ips:.0f} images/s")
    print(f"bare forward+backward: {bare_ips:.0f} images/s")
    print(f"efficiency: {loop_ips / bare_ips:.3f}")


if __name__ == "__main__":
    main()
