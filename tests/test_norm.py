"""The wide-view batch norm (``noisyclean.norm``) against ``nn.BatchNorm2d``: the same
outputs, gradients and running statistics (float64 reference, float32 and bfloat16 on the
wide view), PyTorch's own kernel wherever the wide view does not apply, and the small CNN
training with it."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from noisyclean.models import SmallCNN
from noisyclean.norm import (
    ChannelsLastBatchNorm2d,
    channel_moments,
    wide_view,
    widening,
    with_plain_norms,
)


def _pair(channels: int, seed: int = 0) -> tuple[ChannelsLastBatchNorm2d, nn.BatchNorm2d]:
    """The wide-view norm and a plain one with the same (non-default) state."""
    torch.manual_seed(seed)
    plain = nn.BatchNorm2d(channels)
    with torch.no_grad():
        plain.weight.uniform_(0.5, 1.5)
        plain.bias.normal_()
        plain.running_mean.normal_()
        plain.running_var.uniform_(0.5, 2.0)
    wide = ChannelsLastBatchNorm2d(channels)
    wide.load_state_dict(plain.state_dict())
    return wide, plain


def _input(shape: tuple[int, int, int, int], dtype: torch.dtype, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # an offset mean per channel, as after a convolution without bias
    x = torch.randn(shape, generator=g) * 1.7 + torch.randn(shape[1], 1, 1, generator=g) * 3
    return x.to(dtype).contiguous(memory_format=torch.channels_last)


def _run(norm: nn.Module, x: torch.Tensor, grad: torch.Tensor):
    x = x.detach().clone().requires_grad_(True)
    y = norm(x)
    y.backward(grad)
    return y.detach(), x.grad, norm.weight.grad, norm.bias.grad


def test_widening_makes_a_multiple_of_16_columns() -> None:
    assert [widening(c) for c in (24, 40, 12, 3, 16, 48, 96)] == [2, 2, 4, 16, 1, 1, 1]
    x = torch.arange(2 * 24 * 3 * 4, dtype=torch.float32).reshape(2, 24, 3, 4)
    x = x.contiguous(memory_format=torch.channels_last)
    view = wide_view(x, 2)
    assert view.shape == (12, 48) and view.data_ptr() == x.data_ptr()
    # row 0 holds pixel (0, 0, 0)'s 24 channels, then pixel (0, 0, 1)'s
    torch.testing.assert_close(view[0, :24], x[0, :, 0, 0])
    torch.testing.assert_close(view[0, 24:], x[0, :, 0, 1])


@pytest.mark.parametrize("channels", [24, 40, 12, 3])
def test_channel_moments_are_the_per_channel_mean_and_biased_variance(channels: int) -> None:
    x = _input((8, channels, 6, 6), torch.float32)
    mean, var = channel_moments(x, widening(channels))
    ref = x.double()
    torch.testing.assert_close(mean.double(), ref.mean((0, 2, 3)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        var.double(), ref.var((0, 2, 3), unbiased=False), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("channels", [24, 40, 12, 3])
def test_training_step_matches_batch_norm(channels: int) -> None:
    """Output, input gradient, weight and bias gradients and running statistics of one
    float32 training step are ``nn.BatchNorm2d``'s computed in float64, as closely as
    ``nn.BatchNorm2d``'s own float32 step is (within a factor of 4)."""
    wide, plain = _pair(channels)
    x = _input((8, channels, 6, 6), torch.float32)
    grad = _input((8, channels, 6, 6), torch.float32, seed=2)
    assert wide._widening_for(x) == widening(channels)
    got = _run(wide, x, grad)
    native = _run(plain, x, grad)
    exact_norm = _pair(channels)[1].double()
    exact = _run(exact_norm, x.double(), grad.double())
    for name, a, n, e in zip(("output", "dx", "dweight", "dbias"), got, native, exact,
                             strict=True):
        assert a.dtype == torch.float32, name
        err = (a.double() - e).abs().max().item()
        native_err = (n.double() - e).abs().max().item()
        assert err <= 4 * native_err + 1e-6 * e.abs().max().item(), (name, err, native_err)
    assert got[0].is_contiguous(memory_format=torch.channels_last)
    assert got[1].is_contiguous(memory_format=torch.channels_last)
    for name in ("running_mean", "running_var"):
        torch.testing.assert_close(getattr(wide, name).double(), getattr(exact_norm, name),
                                   rtol=1e-5, atol=1e-5, msg=name)
    assert int(wide.num_batches_tracked) == int(plain.num_batches_tracked) == 1


def test_bfloat16_step_stays_within_bfloat16_rounding_of_float64() -> None:
    """In bfloat16 (as under CPU autocast) the outputs and input gradient are bfloat16,
    the parameter gradients float32, and all are as close to float64 as PyTorch's own
    bfloat16 kernel is, within a factor of 2."""
    wide, plain = _pair(24)
    x = _input((16, 24, 8, 8), torch.bfloat16)
    grad = _input((16, 24, 8, 8), torch.bfloat16, seed=2)
    got = _run(wide, x, grad)
    native = _run(plain, x, grad)
    exact = _run(_pair(24)[1].double(), x.double(), grad.double())
    assert got[0].dtype == got[1].dtype == torch.bfloat16
    assert got[2].dtype == got[3].dtype == torch.float32
    for name, a, n, e in zip(("output", "dx", "dweight", "dbias"), got, native, exact,
                             strict=True):
        err = (a.double() - e).abs().max().item()
        native_err = (n.double() - e).abs().max().item()
        assert err <= 2 * native_err + 1e-6, (name, err, native_err)


def test_it_is_batch_norm_itself_wherever_the_wide_view_does_not_apply() -> None:
    """Evaluation mode, the default memory format, a channel count that is a multiple of
    16, and a pixel count the widening does not divide all take ``nn.BatchNorm2d``'s
    path, bit for bit."""
    cases = [
        (24, _input((4, 24, 5, 5), torch.float32), True),  # channels-last, but eval
        (24, _input((4, 24, 5, 5), torch.float32).contiguous(), False),
        (32, _input((4, 32, 5, 5), torch.float32), False),
        (12, _input((1, 12, 1, 3), torch.float32), False),  # 3 pixels, widening 4
    ]
    for channels, x, evaluate in cases:
        wide, plain = _pair(channels)
        wide.train(not evaluate)
        plain.train(not evaluate)
        assert wide._widening_for(x) == 0
        grad = torch.ones_like(x)
        for a, b in zip(_run(wide, x, grad), _run(plain, x, grad), strict=True):
            assert torch.equal(a, b)
        assert torch.equal(wide.running_var, plain.running_var)


def test_relu_in_place_after_it_and_state_dicts_interchange() -> None:
    """The small CNN's ReLU works in place on the norm's output (which is therefore not
    an autograd view), and the state dict is ``nn.BatchNorm2d``'s."""
    wide, plain = _pair(24)
    x = _input((4, 24, 6, 6), torch.float32)
    outs = []
    for norm in (wide, plain):
        inp = x.detach().clone().requires_grad_(True)
        y = nn.Sequential(norm, nn.ReLU(inplace=True))(inp)
        y.square().sum().backward()
        outs.append((y.detach(), inp.grad))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-4, atol=1e-4)
    assert wide.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(wide.state_dict())


def test_with_plain_norms_swaps_every_wide_norm_for_batch_norm_with_its_state() -> None:
    """``with_plain_norms`` leaves no wide-view norm, puts ``nn.BatchNorm2d`` (the class
    itself) in each one's place, and keeps the state dict as it was."""
    torch.manual_seed(0)
    net = SmallCNN(10, 24)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, ChannelsLastBatchNorm2d):
                module.running_mean.normal_()
    state = copy.deepcopy(net.state_dict())
    wide = sum(isinstance(m, ChannelsLastBatchNorm2d) for m in net.modules())
    plain = with_plain_norms(net)
    assert plain is net and wide == 5
    assert not any(isinstance(m, ChannelsLastBatchNorm2d) for m in plain.modules())
    assert sum(type(m) is nn.BatchNorm2d for m in plain.modules()) == wide
    after = plain.state_dict()
    assert after.keys() == state.keys()
    assert all(torch.equal(after[key], state[key]) for key in state)


def _gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool) -> torch.Tensor:
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = nn.functional.cross_entropy(model(x).float(), y)
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def test_small_cnn_gradient_with_it_is_batch_norms() -> None:
    """The small CNN (width 24: two norms on the wide view) has plain batch norm's
    gradient in float32, and in bfloat16 autocast one as close to the float32 gradient
    as plain batch norm's bfloat16 gradient is (within a factor of 1.5)."""
    torch.manual_seed(0)
    net = SmallCNN(3, 24)
    assert sum(isinstance(m, ChannelsLastBatchNorm2d) for m in net.modules()) == 5
    x = _input((32, 3, 16, 16), torch.float32)
    y = torch.arange(32) % 3
    exact = _gradient(with_plain_norms(copy.deepcopy(net)), x, y, bf16=False)
    wide32 = _gradient(copy.deepcopy(net), x, y, bf16=False)
    assert (wide32 - exact).norm() / exact.norm() < 1e-5
    wide16 = _gradient(copy.deepcopy(net), x, y, bf16=True)
    plain16 = _gradient(with_plain_norms(copy.deepcopy(net)), x, y, bf16=True)
    assert (wide16 - exact).norm() <= 1.5 * (plain16 - exact).norm()


def test_small_cnn_learns_with_it_in_bfloat16() -> None:
    """Thirty SGD steps under CPU bfloat16 autocast fit a small batch of real digits."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images[:64], dtype=torch.float32) / 16.0
    x = images[:, None].repeat(1, 3, 1, 1).contiguous(memory_format=torch.channels_last)
    y = torch.tensor(digits.target[:64])
    torch.manual_seed(0)
    net = SmallCNN(10, 24).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(net(x).float(), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]


@pytest.mark.parametrize("channels", [24, 40, 12, 3])
def test_evaluation_in_bfloat16_gives_batch_norms_bits(channels: int) -> None:
    """In evaluation mode without autograd, bfloat16 channels-last input goes through the
    wide view and comes out bit for bit as ``nn.BatchNorm2d``'s, channels-last; with
    autograd on, the plain path (which keeps the graph) is taken."""
    wide, plain = _pair(channels)
    wide.eval()
    plain.eval()
    x = _input((6, channels, 8, 8), torch.bfloat16)
    with torch.no_grad():
        assert wide._eval_widening_for(x) == widening(channels)
        a, b = wide(x), plain(x)
    assert a.dtype == torch.bfloat16
    assert a.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(a, b)
    assert wide._eval_widening_for(x) == 0  # autograd on
    xg = x.detach().clone().requires_grad_(True)
    wide(xg).float().sum().backward()
    assert xg.grad is not None
    with torch.no_grad():
        assert wide._eval_widening_for(x.float()) == 0  # float32: the plain kernel


def test_batch_norm_view_benchmark_runs() -> None:
    """``benchmarks/batch_norm_view.py`` (a script, not a timed test) runs and prints its
    two tables, saying that the 24-channel layer takes the wide view."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "batch_norm_view.py"
    result = subprocess.run(
        [sys.executable, str(script), "--rounds", "1", "--images", "128"],
        capture_output=True, text=True, check=True, timeout=300,
    )
    assert "| 24 |" in result.stdout and "wide view |" in result.stdout
    assert "| 48 |" in result.stdout and "PyTorch's kernel |" in result.stdout
    assert result.stdout.count(" px, batch ") == 4
