"""Batch norm for training on a CPU with channels-last activations whose channel count
PyTorch's CPU kernel handles slowly.

PyTorch's CPU batch norm over a channels-last tensor vectorises along the channel axis.
At a channel count that is not a multiple of 16 (the small CNN's default 24) its training
forward and backward took about four times as long as over the same memory seen as 48
channels (``benchmarks/RESULTS.md``, "A batch norm on a wider view"). The memory of a
channels-last ``(N, C, H, W)`` tensor is an ``(N*H*W, C)`` matrix, which is also an
``(N*H*W/k, k*C)`` matrix: ``k`` pixels side by side. :class:`ChannelsLastBatchNorm2d`
does its work on that wide view:

* the statistics of each of its ``k*C`` columns, combined over the ``k`` column groups
  into each channel's mean and biased variance (exactly, the groups being of equal
  size);
* the normalisation, an affine map per channel, applied per column with the channel's
  values repeated ``k`` times;
* the gradient: the two sums per channel that batch norm's backward needs (of ``dy`` and
  of ``dy * x_hat``), gathered per column and combined, then ``dx`` as two affine maps
  per channel (of ``x`` and of ``dy``).

The arithmetic is batch norm's; only the rounding differs (in bfloat16, ``dx`` is the sum
of two rounded terms). In evaluation mode without autograd, bfloat16 input is normalised
on the wide view by the running statistics, bit for bit what ``nn.BatchNorm2d`` gives.
Everywhere else (evaluation with autograd or in float32, other devices, other layouts,
channel counts that are multiples of 16) the module is ``nn.BatchNorm2d``, with the same
parameters and buffers, so state dicts are interchangeable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

#: Channel counts that are multiples of this take PyTorch's own kernel.
FAST_MULTIPLE = 16


def widening(channels: int) -> int:
    """How many pixels the wide view puts side by side so that it has a multiple of
    :data:`FAST_MULTIPLE` columns (1: the channel count already is one)."""
    return FAST_MULTIPLE // math.gcd(channels, FAST_MULTIPLE)


def wide_view(x: torch.Tensor, k: int) -> torch.Tensor:
    """A channels-last ``(N, C, H, W)`` tensor as its ``(N*H*W/k, k*C)`` matrix (a view;
    a copy where ``x`` is in another layout)."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n * h * w // k, k * c)


def _channels_last(matrix: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The contiguous ``(N*H*W/k, k*C)`` matrix as a channels-last ``(N, C, H, W)`` tensor
    on the same memory. Not a view in autograd's sense, so that an in-place ReLU after
    the norm stays allowed."""
    n, c, h, w = shape
    return torch.empty(0, dtype=matrix.dtype, device=matrix.device).set_(
        matrix.untyped_storage(), matrix.storage_offset(), shape, (h * w * c, 1, w * c, c)
    )


def channel_moments(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance (float32) of a channels-last ``(N, C, H, W)``
    tensor, from the column statistics of its wide view (:func:`wide_view`): the mean of
    the group means, and the mean of the group variances plus the variance of the group
    means (the groups have equal counts)."""
    c = x.shape[1]
    zeros = torch.zeros(k * c, device=x.device)
    ones = torch.ones(k * c, device=x.device)
    # With float32 buffers the statistics come back in float32 for bfloat16 input too;
    # momentum 0 leaves the buffers as they are.
    means, variances = torch.batch_norm_update_stats(wide_view(x, k), zeros, ones, 0.0)
    means, variances = means.view(k, c), variances.view(k, c)
    mean = means.mean(0)
    return mean, variances.mean(0) + (means - mean).square().mean(0)


def tiled(vector: torch.Tensor, k: int) -> torch.Tensor:
    """A per-channel vector repeated ``k`` times, one value per column of the wide view
    (``vector.repeat(k)``, by ``torch.cat``: on 2 CPU cores 0.9 us against 4.6 us a call,
    and a training step makes about twenty such calls)."""
    return torch.cat([vector] * k)


def _affine(matrix: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor | None) -> torch.Tensor:
    """``matrix * scale + shift`` per column, by the batch-norm kernel in evaluation mode
    (zero mean, unit variance, no epsilon), which keeps bfloat16 input in bfloat16."""
    zeros = torch.zeros_like(scale)
    return F.batch_norm(matrix, zeros, torch.ones_like(scale), scale, shift, False, 0.0, 0.0)


def _normalise(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, weight: torch.Tensor,
               bias: torch.Tensor, eps: float, k: int) -> torch.Tensor:
    """Batch norm of the channels-last ``x`` by the given per-channel statistics (the
    kernel in evaluation mode, on the wide view), as a channels-last tensor."""
    out = F.batch_norm(
        wide_view(x, k), tiled(mean, k), tiled(var, k), tiled(weight, k), tiled(bias, k),
        False, 0.0, eps,
    )
    return _channels_last(out, x.shape)


class _WideNorm(torch.autograd.Function):
    """Training-mode batch norm of ``x`` given its batch ``mean`` and biased ``var``,
    with batch norm's gradient (through the statistics too), on the wide view."""

    @staticmethod
    def forward(ctx, x, weight, bias, mean, var, eps: float, k: int):  # noqa: ANN001, ANN205
        ctx.save_for_backward(x, weight, mean, var)
        ctx.eps, ctx.k = eps, k
        return _normalise(x, mean, var, weight, bias, eps, k)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        x, weight, mean, var = ctx.saved_tensors
        k, c = ctx.k, weight.numel()
        m = x.numel() // c
        wide_x, wide_grad = wide_view(x, k), wide_view(grad, k)
        # In evaluation mode the kernel's gradients of weight and bias are the two sums
        # per column: sum(dy * x_hat) and sum(dy).
        _, sums_gx, sums_g = torch.ops.aten.native_batch_norm_backward(
            wide_grad, wide_x, tiled(weight, k), tiled(mean, k), tiled(var, k), None, None,
            False, ctx.eps, [False, True, True],
        )
        sum_gx, sum_g = sums_gx.view(k, c).sum(0), sums_g.view(k, c).sum(0)
        invstd = torch.rsqrt(var + ctx.eps)
        scale = weight * invstd
        # dx = scale * (dy - sum(dy) / m - x_hat * sum(dy * x_hat) / m) = scale*dy + a*x + b
        a = -scale * invstd * sum_gx / m
        b = -scale * sum_g / m - a * mean
        grad_x = _affine(wide_x, tiled(a, k), tiled(b, k))
        grad_x.add_(_affine(wide_grad, tiled(scale, k), None))
        return _channels_last(grad_x, x.shape), sum_gx, sum_g, None, None, None, None


class ChannelsLastBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that trains on the wide view (see the module docstring) where
    that is faster: in training mode, on the CPU, for channels-last float32 or bfloat16
    input with a channel count that is not a multiple of :data:`FAST_MULTIPLE`, affine
    float32 parameters and running statistics with a momentum. In evaluation mode without
    autograd it normalises channels-last bfloat16 input on the wide view too, with the same
    bits as ``nn.BatchNorm2d``. Elsewhere it is ``nn.BatchNorm2d``."""

    def _view_widening(self, x: torch.Tensor, dtypes: tuple[torch.dtype, ...]) -> int:
        """``k`` of the wide view for an affine norm's ``x`` of one of ``dtypes`` (on the
        CPU, channels-last, float32 parameters, a channel count that is not a multiple of
        :data:`FAST_MULTIPLE`, a pixel count ``k`` divides), or 0."""
        if not self.affine or x.device.type != "cpu" or x.dim() != 4:
            return 0
        if x.dtype not in dtypes or self.weight.dtype != torch.float32:
            return 0
        k = widening(x.shape[1])
        pixels = x.shape[0] * x.shape[2] * x.shape[3]
        if k == 1 or pixels < 2 or pixels % k:
            return 0
        return k if x.is_contiguous(memory_format=torch.channels_last) else 0

    def _widening_for(self, x: torch.Tensor) -> int:
        """``k`` of the wide view for ``x`` in training, or 0 where PyTorch's own kernel is
        used (evaluation, no running statistics or no momentum)."""
        if not (self.training and self.track_running_stats) or self.momentum is None:
            return 0
        return self._view_widening(x, (torch.float32, torch.bfloat16))

    def _eval_widening_for(self, x: torch.Tensor) -> int:
        """``k`` of the wide view for ``x`` in evaluation mode without autograd (bfloat16
        only: there the kernel's per-channel affine map gave the same bits on the wide view
        in less than half the time, while in float32 the wide view was no faster), or 0."""
        if self.training or torch.is_grad_enabled() or self.running_mean is None:
            return 0
        return self._view_widening(x, (torch.bfloat16,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Batch norm of ``x``; see the class docstring for when the wide view is used."""
        k = self._widening_for(x)
        if not k:
            k = self._eval_widening_for(x)
            if not k:
                return super().forward(x)
            return _normalise(x, self.running_mean, self.running_var, self.weight,
                              self.bias, self.eps, k)
        pixels = x.numel() // x.shape[1]
        with torch.no_grad():
            mean, var = channel_moments(x, k)
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * (pixels / (pixels - 1)), self.momentum)
        return _WideNorm.apply(x, self.weight, self.bias, mean, var, self.eps, k)


def with_plain_norms(model: nn.Module) -> nn.Module:
    """``model`` with an ``nn.BatchNorm2d`` (same state) in place of each
    :class:`ChannelsLastBatchNorm2d`, changed in place and returned (to compare against
    PyTorch's own kernel)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, ChannelsLastBatchNorm2d):
            plain = nn.BatchNorm2d(module.num_features, module.eps, module.momentum,
                                   module.affine, module.track_running_stats)
            plain.load_state_dict(module.state_dict())
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, plain)
    return model
