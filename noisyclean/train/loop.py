"""The one training loop: epochs, optimisers, the learning-rate schedule, mixed precision and
progress. Methods (warm-up, and later DivideMix, co-teaching, robust losses) differ only in
which batches they draw and what loss they compute per batch; see :class:`Method`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from ..progress import Progress


def one_cycle_lr(step: int, total_steps: int, peak: float, warmup_frac: float = 0.2) -> float:
    """Triangular one-cycle schedule: linear from ``peak/10`` up to ``peak`` over the first
    ``warmup_frac`` of the steps, then linear down to 0 at ``total_steps``."""
    total_steps = max(1, total_steps)
    up = max(1, math.ceil(warmup_frac * total_steps))
    if step < up:
        return peak * (0.1 + 0.9 * step / up)
    return peak * max(0.0, (total_steps - step) / max(1, total_steps - up))


@dataclass
class Learner:
    """One network with its optimiser and its step counter."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    lr_at: Callable[[int], float]
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def set_lr(self) -> float:
        """Set the optimiser's learning rate for the current step and return it."""
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr


def make_learner(
    model: nn.Module,
    lr: float,
    momentum: float,
    weight_decay: float,
    total_steps: int,
) -> Learner:
    """SGD with Nesterov momentum and the :func:`one_cycle_lr` schedule over ``total_steps``."""
    decay, no_decay = [], []
    for param in model.parameters():
        (no_decay if param.ndim <= 1 else decay).append(param)
    optimizer = torch.optim.SGD(
        [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
        momentum=momentum,
        nesterov=momentum > 0,
    )
    return Learner(model, optimizer, lambda step: one_cycle_lr(step, total_steps, lr))


class Method(Protocol):
    """What a training method supplies to :func:`run_epochs`."""

    def steps_per_epoch(self, epoch: int) -> int:
        """Number of optimiser steps (over all learners) in ``epoch``."""
        ...

    def batches(self, epoch: int) -> Iterator[tuple[int, Any]]:
        """Yield ``(learner_index, batch)`` pairs for one epoch."""
        ...

    def loss(
        self, learner_index: int, model: nn.Module, batch: Any, epoch: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Return the scalar loss to minimise and metrics (summed over the batch) with a
        ``"count"`` key giving the number of samples they were summed over."""
        ...


@dataclass
class Precision:
    """Mixed-precision settings: ``dtype`` None means full float32."""

    device: torch.device
    dtype: torch.dtype | None = None

    @classmethod
    def choose(cls, device: torch.device, amp: bool | None) -> Precision:
        """bfloat16 autocast on CUDA (float16 where bf16 is unsupported) unless ``amp`` is
        False; float32 elsewhere."""
        if device.type != "cuda" or amp is False:
            return cls(device)
        bf16 = torch.cuda.is_bf16_supported()
        return cls(device, torch.bfloat16 if bf16 else torch.float16)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context manager that runs the forward pass in the chosen precision."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)


def run_epochs(
    learners: list[Learner],
    method: Method,
    epochs: range,
    precision: Precision,
    progress: Progress,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    description: str = "train",
) -> list[dict[str, float]]:
    """Train ``learners`` with ``method`` for the given epochs.

    Each step: set the learner's scheduled learning rate, compute ``method.loss`` under
    autocast, back-propagate (with a gradient scaler for float16), step the optimiser.
    After each epoch ``on_epoch_end(epoch, stats)`` is called (for signals, checkpoints).

    Returns:
        One dict per epoch: mean ``loss`` and the other metrics, ``lr``, ``seconds``,
        ``images_per_s``.
    """
    scaler = torch.amp.GradScaler("cuda") if precision.dtype == torch.float16 else None
    log = []
    for epoch in epochs:
        for learner in learners:
            learner.model.train()
        sums: dict[str, float] = {}
        count = 0
        lr = 0.0
        start = time.perf_counter()
        task = progress.task(
            f"{description} epoch {epoch + 1}/{epochs.stop}", total=method.steps_per_epoch(epoch)
        )
        for k, batch in method.batches(epoch):
            learner = learners[k]
            lr = learner.set_lr()
            with precision.autocast():
                loss, metrics = method.loss(k, learner.model, batch, epoch)
            learner.optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(learner.optimizer)
                scaler.update()
            else:
                loss.backward()
                learner.optimizer.step()
            learner.step += 1
            n = int(metrics.pop("count"))
            count += n
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + value
            seen = max(count, 1)
            mean_loss, mean_acc = sums.get("loss", 0.0) / seen, sums.get("acc", 0.0) / seen
            progress.advance(task, loss=mean_loss, acc=mean_acc)
        if precision.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        stats = {key: value / max(count, 1) for key, value in sums.items()}
        stats.update(epoch=epoch, lr=lr, seconds=seconds, images_per_s=count / max(seconds, 1e-9))
        progress.finish(task)
        log.append(stats)
        if on_epoch_end is not None:
            on_epoch_end(epoch, stats)
    return log
