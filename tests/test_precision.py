"""The training precision on each device: bfloat16 autocast on CUDA and on CPUs that compute
in bfloat16 natively (AMX, AVX512-BF16), float32 elsewhere; ``--amp``/``--no-amp`` decide
when given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from noisyclean import device as device_module
from noisyclean.cli import app
from noisyclean.data.batches import DeviceImages
from noisyclean.device import cpu_flags, cpu_has_native_bf16, cpu_name
from noisyclean.models import build_model
from noisyclean.progress import Progress
from noisyclean.train import loop
from noisyclean.train.loop import Precision, make_learner, run_epochs
from noisyclean.train.methods.warmup import Warmup

from .test_loop import _separable

runner = CliRunner()
CPU = torch.device("cpu")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU\n"
                       "flags\t\t: fpu sse2 avx512f amx_tile amx_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(str(cpuinfo)) == {"fpu", "sse2", "avx512f", "amx_tile", "amx_bf16"}
    assert cpu_flags(str(tmp_path / "missing")) == set()
    assert cpu_name(str(cpuinfo)) == "Test CPU"
    assert isinstance(cpu_name(str(tmp_path / "missing")), str)


def test_native_bf16_needs_amx_or_avx512_bf16() -> None:
    assert cpu_has_native_bf16({"avx2", "amx_bf16"})
    assert cpu_has_native_bf16({"avx512f", "avx512_bf16"})
    assert not cpu_has_native_bf16({"avx2", "avx512f", "avx512bw", "amx_tile"})
    assert not cpu_has_native_bf16(set())


@pytest.mark.parametrize(("native", "amp", "expected"), [
    (True, None, torch.bfloat16),
    (False, None, None),
    (False, True, torch.bfloat16),
    (True, False, None),
])
def test_cpu_precision_follows_the_hardware_unless_asked(
    monkeypatch: pytest.MonkeyPatch, native: bool, amp: bool | None, expected: torch.dtype | None
) -> None:
    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: native)
    assert Precision.choose(CPU, amp).dtype == expected
    # MPS never gets autocast from the default.
    assert Precision.choose(torch.device("mps"), None).dtype is None


@pytest.mark.parametrize(("capability", "amp", "expected"), [
    ((7, 5), None, torch.float16),  # T4, RTX 20: is_bf16_supported() says yes, by emulation
    ((7, 0), True, torch.float16),  # V100
    ((8, 0), None, torch.bfloat16),  # A100
    ((9, 0), None, torch.bfloat16),  # H100
    ((7, 5), False, None),
])
def test_cuda_precision_is_bfloat16_from_ampere_on_and_float16_before(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], amp: bool | None,
    expected: torch.dtype | None,
) -> None:
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_capability",
                        lambda device=None: asked.append(device) or capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    cuda = torch.device("cuda")
    assert Precision.choose(cuda, amp).dtype == expected
    assert asked == ([] if amp is False else [cuda])


def test_bf16_autocast_trains_on_the_cpu() -> None:
    """The training loop under CPU bfloat16 autocast learns, with float32 weights."""
    images, labels = _separable(64)
    data = DeviceImages(images, labels, CPU, channels_last=True)
    torch.manual_seed(0)
    model = build_model("small-cnn", 2, width=8).to(memory_format=torch.channels_last)
    method = Warmup(data, batch_size=16, seed=0)
    learner = make_learner(model, 0.05, 0.9, 5e-4, method.steps_per_epoch(0) * 4)
    log = run_epochs([learner], method, range(4), Precision(CPU, torch.bfloat16),
                     Progress(quiet=True))
    assert log[-1]["acc"] > 0.95
    assert log[-1]["loss"] < log[0]["loss"]
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_scan_records_its_precision_and_repeats_itself_in_bf16(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """``--amp`` on the CPU: bfloat16 autocast with channels-last batches, recorded in
    summary.json, and the same seed gives the same table; ``--no-amp``: float32, still
    channels-last (the CPU default in either precision) unless ``--no-channels-last``."""
    root, _ = digits_folder
    fast = ["--epochs", "3", "--width", "8", "--quiet", "--seed", "1"]
    for name in ("a", "b"):
        result = runner.invoke(app, ["scan", str(root), "--out", str(tmp_path / name),
                                     "--amp", *fast])
        assert result.exit_code == 0, result.output
    device = json.loads((tmp_path / "a" / "summary.json").read_text())["device"]
    assert device["precision"] == "torch.bfloat16" and device["channels_last"] is True
    assert (tmp_path / "a" / "scores.csv").read_bytes() == (
        tmp_path / "b" / "scores.csv").read_bytes()
    result = runner.invoke(app, ["scan", str(root), "--out", str(tmp_path / "c"), "--no-amp",
                                 *fast])
    assert result.exit_code == 0, result.output
    device = json.loads((tmp_path / "c" / "summary.json").read_text())["device"]
    assert device["precision"] == "torch.float32" and device["channels_last"] is True
    result = runner.invoke(app, ["scan", str(root), "--out", str(tmp_path / "d"), "--no-amp",
                                 "--no-channels-last", *fast])
    assert result.exit_code == 0, result.output
    device = json.loads((tmp_path / "d" / "summary.json").read_text())["device"]
    assert device["precision"] == "torch.float32" and device["channels_last"] is False


def test_this_machines_default_matches_its_cpu_flags(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """With no ``--amp``, the CPU scan uses bfloat16 exactly when the CPU has it natively,
    and channels-last batches either way."""
    root, _ = digits_folder
    result = runner.invoke(app, ["scan", str(root), "--out", str(tmp_path / "o"), "--device",
                                 "cpu", "--epochs", "1", "--width", "8", "--quiet"])
    assert result.exit_code == 0, result.output
    device = json.loads((tmp_path / "o" / "summary.json").read_text())["device"]
    native = device_module.cpu_has_native_bf16()
    assert device["precision"] == ("torch.bfloat16" if native else "torch.float32")
    assert device["channels_last"] is True


def test_a_gpu_index_is_refused_with_cuda_visible_devices_advice(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    advice = "CUDA_VISIBLE_DEVICES=1 and --device cuda"
    with pytest.raises(device_module.NoisyCleanError, match=advice):
        device_module.resolve_device("cuda:1")
    root, _ = digits_folder
    result = runner.invoke(app, ["scan", str(root), "--out", str(tmp_path / "o"),
                                 "--device", "cuda:1", "--quiet"])
    assert result.exit_code == 2
    assert "CUDA_VISIBLE_DEVICES=1" in " ".join(result.output.split())
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()
