"""The one training loop: epochs, optimisers, the learning-rate schedule, mixed precision and
progress. Methods (warm-up, DivideMix, the cross-entropy baseline, ...) differ only in which
batches they draw and what loss they compute per batch; see :class:`Method`. Checkpoints
(:mod:`noisyclean.train.checkpoint`) are written from ``on_epoch_end``.
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

from ..device import cpu_has_native_bf16
from ..progress import Progress


def one_cycle_lr(step: int, total_steps: int, peak: float, warmup_frac: float = 0.2) -> float:
    """Triangular one-cycle schedule: linear from ``peak/10`` up to ``peak`` over the first
    ``warmup_frac`` of the steps, then linear down to 0 at ``total_steps``."""
    total_steps = max(1, total_steps)
    up = max(1, math.ceil(warmup_frac * total_steps))
    if step < up:
        return peak * (0.1 + 0.9 * step / up)
    return peak * max(0.0, (total_steps - step) / max(1, total_steps - up))


def step_lr(
    epoch: int, base: float, drop_epochs: tuple[int, ...] = (), factor: float = 0.1
) -> float:
    """Step schedule (DivideMix's): ``base`` times ``factor`` for every epoch of
    ``drop_epochs`` already reached, e.g. 0.02 up to epoch 149 and 0.002 from epoch 150."""
    return base * factor ** sum(1 for drop in drop_epochs if epoch >= drop)


SCHEDULES = ("one-cycle", "step")


@dataclass
class Learner:
    """One network with its optimiser and its step and epoch counters.

    The learning rate is ``epoch_lr(epoch)`` when an epoch schedule is given, else
    ``lr_at(step)``; times ``lr_scale(epoch)`` when that is given (a per-epoch factor,
    e.g. for larger batches in some epochs).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    lr_at: Callable[[int], float]
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    epoch_lr: Callable[[int], float] | None = None
    epoch: int = 0
    lr_scale: Callable[[int], float] | None = None

    def set_lr(self) -> float:
        """Set the optimiser's learning rate for the current step (or epoch) and return it."""
        lr = self.epoch_lr(self.epoch) if self.epoch_lr is not None else self.lr_at(self.step)
        if self.lr_scale is not None:
            lr *= self.lr_scale(self.epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr


def make_learner(
    model: nn.Module,
    lr: float,
    momentum: float,
    weight_decay: float,
    total_steps: int,
    schedule: str = "one-cycle",
    drop_epochs: tuple[int, ...] = (),
    nesterov: bool | None = None,
) -> Learner:
    """SGD (no weight decay on biases and norm weights) with a learning-rate schedule.

    Args:
        model: the network.
        lr: peak (``one-cycle``) or initial (``step``) learning rate.
        momentum: SGD momentum.
        weight_decay: L2 penalty on the weights of convolutions and linear layers.
        total_steps: optimiser steps of the whole run (``one-cycle`` only).
        schedule: ``one-cycle`` (:func:`one_cycle_lr` over ``total_steps``) or ``step``
            (:func:`step_lr`, divided by 10 at each epoch of ``drop_epochs``).
        drop_epochs: epochs at which the ``step`` schedule divides the rate by 10.
        nesterov: Nesterov momentum; None means on whenever ``momentum > 0``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; valid: {SCHEDULES}")
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
        nesterov=(momentum > 0) if nesterov is None else (nesterov and momentum > 0),
        # one multi-tensor update for all parameters: the same values as the per-tensor
        # loop (PyTorch's default on the CPU), in less time per step (112 us against 147
        # us for the small CNN on 2 cores)
        foreach=True,
    )
    if schedule == "step":
        drops = tuple(drop_epochs)
        return Learner(
            model, optimizer, lambda step: lr, epoch_lr=lambda epoch: step_lr(epoch, lr, drops)
        )
    return Learner(model, optimizer, lambda step: one_cycle_lr(step, total_steps, lr))


class Method(Protocol):
    """What a training method supplies to :func:`run_epochs`.

    A method may also define ``start_epoch(epoch)``, called before each epoch's batches are
    drawn (DivideMix co-divides there).
    """

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
        """The precision ``--amp`` asks for (None: the device's default).

        On CUDA: bfloat16 autocast from compute capability 8.0 (Ampere) on, float16 with a
        gradient scaler below it (T4, V100, the RTX 20 series), unless ``amp`` is False.
        Below 8.0 ``torch.cuda.is_bf16_supported()`` still says yes, by emulation, but cuDNN
        does not run bfloat16 convolutions there and they fall back to slow kernels.

        On the CPU: bfloat16 autocast where the CPU computes in bfloat16 natively
        (:func:`~noisyclean.device.cpu_has_native_bf16`) or ``amp`` is True, unless ``amp``
        is False. float32 elsewhere (MPS)."""
        if amp is False:
            return cls(device)
        if device.type == "cuda":
            bf16 = torch.cuda.get_device_capability(device) >= (8, 0)
            return cls(device, torch.bfloat16 if bf16 else torch.float16)
        if device.type == "cpu" and (amp or cpu_has_native_bf16()):
            return cls(device, torch.bfloat16)
        return cls(device)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A new gradient scaler where the precision is float16 (None elsewhere): float16's
        narrow range needs the loss scaled up before the backward pass."""
        if self.dtype != torch.float16:
            return None
        return torch.amp.GradScaler(self.device.type)

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
    scaler: torch.amp.GradScaler | None = None,
) -> list[dict[str, float]]:
    """Train ``learners`` with ``method`` for the given epochs.

    Before each epoch: every learner's ``epoch`` is set and ``method.start_epoch(epoch)``
    is called when the method has one. Each step: set the learner's scheduled learning
    rate, compute ``method.loss`` under autocast, back-propagate (with a gradient scaler
    for float16), step the optimiser. After each epoch ``on_epoch_end(epoch, stats)`` is
    called (for signals, checkpoints).

    ``scaler`` is the float16 gradient scaler to go on with (a resumed run's, whose scale
    the checkpoint kept); None makes a new one where the precision needs one.

    Returns:
        One dict per epoch: mean ``loss`` and the other metrics, ``lr``, ``seconds``,
        ``images_per_s``.
    """
    if scaler is None:
        scaler = precision.grad_scaler()
    log = []
    start_epoch = getattr(method, "start_epoch", None)
    for epoch in epochs:
        start = time.perf_counter()
        for learner in learners:
            learner.epoch = epoch
        if start_epoch is not None:
            start_epoch(epoch)
        for learner in learners:
            learner.model.train()
        sums: dict[str, float] = {}
        count = 0
        lr = 0.0
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
            shown = {key: sums[key] / seen for key in ("loss", "acc") if key in sums}
            progress.advance(task, **shown)
        if precision.device.type == "cuda":
            torch.cuda.synchronize(precision.device)
        seconds = time.perf_counter() - start
        stats = {key: value / max(count, 1) for key, value in sums.items()}
        stats.update(epoch=epoch, lr=lr, seconds=seconds, images_per_s=count / max(seconds, 1e-9))
        progress.finish(task)
        log.append(stats)
        if on_epoch_end is not None:
            on_epoch_end(epoch, stats)
    return log
