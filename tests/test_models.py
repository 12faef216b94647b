"""Backbones: shapes, torchvision heads, and pretrained weights loaded from local files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from noisyclean.errors import NoisyCleanError
from noisyclean.models import PreActResNet18, SmallCNN, build_model, check_weights


@pytest.mark.parametrize("name,size", [("small-cnn", 16), ("small-cnn", 32),
                                       ("preact-resnet18", 32), ("resnet18", 32)])
def test_models_give_one_logit_per_class(name: str, size: int) -> None:
    model = build_model(name, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7)


def test_preact_resnet18_has_the_dividemix_size() -> None:
    n_params = sum(p.numel() for p in PreActResNet18(10).parameters())
    assert 11.0e6 < n_params < 11.3e6  # the CIFAR PreAct ResNet-18 has ~11.17 M parameters


def test_small_cnn_width_scales_it() -> None:
    small = sum(p.numel() for p in SmallCNN(10, width=16).parameters())
    large = sum(p.numel() for p in SmallCNN(10, width=32).parameters())
    assert 3.5 < large / small < 4.5


def test_local_state_dict_file_is_loaded(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = torchvision.models.resnet18(weights=None)  # 1000-class head, like ImageNet
    path = tmp_path / "r18.pt"
    torch.save(source.state_dict(), path)
    said: list[str] = []
    model = build_model("resnet18", num_classes=3, weights=str(path), warn=said.append)
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert model.fc.out_features == 3  # head replaced, backbone kept
    assert said == [f"--weights {path}: fc.weight (file 1000x512, network 3x512), fc.bias (file "
                    "1000, network 3) not loaded, left at random weights"]


def test_a_torchvision_file_for_the_same_classes_keeps_its_head(tmp_path: Path) -> None:
    # a resnet18 fine-tuned on the user's 3 classes, passed back as --weights: nothing of
    # it, the head included, is replaced by random weights
    torch.manual_seed(3)
    source = build_model("resnet18", 3)
    torch.save(source.state_dict(), tmp_path / "mine.pt")
    said: list[str] = []
    model = build_model("resnet18", 3, weights=str(tmp_path / "mine.pt"), warn=said.append)
    for a, b in zip(model.state_dict().values(), source.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert said == []


def test_a_small_cnn_file_for_other_classes_warns_of_its_head(tmp_path: Path) -> None:
    source = build_model("small-cnn", 5, width=8)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    said: list[str] = []
    model = build_model("small-cnn", 3, weights=str(tmp_path / "w.pt"), width=8,
                        warn=said.append)
    assert torch.equal(model.features[0].weight, source.features[0].weight)
    assert len(said) == 1
    assert "classifier.weight (file 5x32, network 3x32)" in said[0]
    assert "classifier.bias (file 5, network 3)" in said[0]


def test_a_checkpoint_or_data_parallel_state_dict_loads(tmp_path: Path) -> None:
    """Files as other training code saves them: the state dict under ``model`` or
    ``state_dict``, and keys prefixed ``module.`` by ``DataParallel``."""
    source = build_model("small-cnn", 3, width=8)
    state = source.state_dict()
    wrapped = {"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 7}
    for name, saved in (("ddp", {f"module.{k}": v for k, v in state.items()}),
                        ("ckpt", {"state_dict": state, "optimizer": {}}), ("both", wrapped)):
        torch.save(saved, tmp_path / f"{name}.pt")
        model = build_model("small-cnn", 3, weights=str(tmp_path / f"{name}.pt"), width=8)
        for a, b in zip(model.state_dict().values(), state.values(), strict=True):
            assert torch.equal(a, b), name


def test_named_torchvision_weights_load_from_the_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # save the weights ourselves where torch.hub looks, so no download happens
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    torch.manual_seed(2)
    source = torchvision.models.resnet18(weights=None)
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(source.state_dict(), checkpoints / Path(weights.url).name)
    model = build_model("resnet18", num_classes=4, weights="IMAGENET1K_V1")
    assert torch.equal(model.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    assert model.fc.out_features == 4


def test_small_cnn_loads_its_own_checkpoint(tmp_path: Path) -> None:
    source = build_model("small-cnn", 5)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    model = build_model("small-cnn", 5, weights=str(tmp_path / "w.pt"))
    for a, b in zip(model.state_dict().values(), source.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_bad_model_and_weights_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(NoisyCleanError, match="unknown model 'resnet9000'"):
        build_model("resnet9000", 3)
    with pytest.raises(NoisyCleanError, match="neither a file nor a weights name"):
        build_model("resnet18", 3, weights="NOPE")
    with pytest.raises(NoisyCleanError, match="must be a local state-dict file"):
        build_model("small-cnn", 3, weights="IMAGENET1K_V1")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(NoisyCleanError, match="cannot read weights file"):
        build_model("small-cnn", 3, weights=str(tmp_path / "junk.pt"))
    torch.save({"x": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(NoisyCleanError, match="does not fit --model small-cnn: 37 of its 37 "
                       "tensors .* give the --model and --width the file was saved from"):
        build_model("small-cnn", 3, weights=str(tmp_path / "other.pt"))


def test_small_cnn_head_input_is_standardised_at_any_image_size() -> None:
    # The global maximum over a 16x16 map is larger than over a 4x4 one; the batch norm of
    # the pooled features keeps the classifier's input at mean 0, variance 1 either way.
    torch.manual_seed(0)
    model = SmallCNN(10, width=8).train()
    for side in (32, 128):
        pooled = model.features(torch.rand(64, 3, side, side))
        assert pooled.mean(0).abs().max() < 1e-4
        assert torch.allclose(pooled.var(0, unbiased=False), torch.ones(8 * 4), atol=1e-2)


def test_small_cnn_trains_on_a_batch_of_one() -> None:
    # A batch norm cannot normalise one sample by its own statistics; the pooled-feature
    # norm then uses its running statistics instead of failing.
    model = SmallCNN(3, width=8).train()
    out = model(torch.rand(1, 3, 16, 16))
    out.sum().backward()
    assert out.shape == (1, 3)


def _fake_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[list, dict]:
    """An empty torch.hub cache, and a download of ResNet-18's weights that writes a
    locally made state dict (no network) and records the ``progress`` it was asked for."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    torch.manual_seed(2)
    state = torchvision.models.resnet18(weights=None).state_dict()
    shown: list[bool] = []

    def download(url: str, dst: str, hash_prefix: str | None = None,
                 progress: bool = True) -> None:
        shown.append(progress)
        torch.save(state, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    return shown, state


@pytest.mark.parametrize("download_progress", [True, False])
def test_a_weights_download_shows_torchs_progress_bar_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, download_progress: bool
) -> None:
    shown, state = _fake_download(monkeypatch, tmp_path)
    model = build_model("resnet18", 4, weights="IMAGENET1K_V1",
                        download_progress=download_progress)
    assert shown == [download_progress]
    assert torch.equal(model.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


@pytest.mark.parametrize("quiet", [True, False])
@pytest.mark.parametrize("command", ["scan", "train"])
def test_quiet_downloads_weights_without_a_progress_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, quiet: bool
) -> None:
    """``scan --quiet --weights NAME`` and ``train --quiet ...`` print nothing while the
    weights download (torch's bar went to standard error before); without ``--quiet`` the
    bar is shown."""
    from typer.testing import CliRunner

    from noisyclean.cli import app

    from .conftest import write_digits_folder

    write_digits_folder(tmp_path / "data", per_class=8, flip=0, size=32)
    shown, _ = _fake_download(monkeypatch, tmp_path)
    options = {"scan": ["--low-res-epochs", "0", "--mid-res-epochs", "0"],
               "train": ["--method", "standard"]}[command]
    args = [command, str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--model",
            "resnet18", "--weights", "IMAGENET1K_V1", "--epochs", "1", "--no-cache",
            *options, *(["--quiet"] if quiet else [])]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert shown == [not quiet]


def test_a_tutorial_or_lightning_checkpoint_loads(tmp_path: Path) -> None:
    """PyTorch's tutorial keeps the network under ``model_state_dict``; Lightning under
    ``state_dict``, each key prefixed by the module's attribute (``model.``)."""
    source = build_model("small-cnn", 3, width=8)
    state = source.state_dict()
    for name, saved in (("tutorial", {"model_state_dict": state, "epoch": 3}),
                        ("lightning", {"state_dict": {f"model.{k}": v for k, v in state.items()},
                                       "epoch": 3})):
        torch.save(saved, tmp_path / f"{name}.pt")
        model = build_model("small-cnn", 3, weights=str(tmp_path / f"{name}.pt"), width=8)
        for a, b in zip(model.state_dict().values(), state.values(), strict=True):
            assert torch.equal(a, b), name
    torch.save({"weights": state, "epoch": 3}, tmp_path / "other-key.pt")
    with pytest.raises(NoisyCleanError, match="the file holds a dict with keys 'weights', "
                       "'epoch'"):
        build_model("small-cnn", 3, weights=str(tmp_path / "other-key.pt"), width=8)


def test_a_deeper_model_of_the_same_family_is_refused_and_a_few_extra_tensors_said(
    tmp_path: Path,
) -> None:
    """resnet34's file fills every tensor of resnet18, and 96 more that resnet18 has not:
    loaded, a truncated resnet34 would score the images. A few tensors the network has not
    (an auxiliary head saved with the network) are loaded around and named in a warning."""
    torch.save(torchvision.models.resnet34(num_classes=10).state_dict(), tmp_path / "r34.pt")
    with pytest.raises(NoisyCleanError, match="does not fit --model resnet18: 0 of its 122 "
                       "tensors .* and 96 of the file's 218 are not in the network"):
        build_model("resnet18", 10, weights=str(tmp_path / "r34.pt"))
    source = build_model("small-cnn", 3, width=8)
    torch.save({**source.state_dict(), "aux.weight": torch.zeros(2)}, tmp_path / "aux.pt")
    said: list[str] = []
    model = build_model("small-cnn", 3, weights=str(tmp_path / "aux.pt"), width=8,
                        warn=said.append)
    for a, b in zip(model.state_dict().values(), source.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert said == [f"--weights {tmp_path / 'aux.pt'}: aux.weight of the file are not in "
                    "--model small-cnn and were not loaded"]


def test_a_weights_path_under_the_home_folder_is_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    source = build_model("small-cnn", 3, width=8)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    for name in ("small-cnn", "resnet18"):
        if name == "resnet18":
            torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), tmp_path / "w.pt")
        check_weights(name, "~/w.pt")
        build_model(name, 3, weights="~/w.pt", width=8)


def test_weights_are_checked_before_the_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A misspelt weights name was refused only once every image had been decoded."""
    from typer.testing import CliRunner

    from noisyclean.cli import app

    from .conftest import write_digits_folder

    write_digits_folder(tmp_path / "data", per_class=10, flip=0)
    decoded: list[int] = []
    import noisyclean.data.load as load

    real = load.decode_images
    monkeypatch.setattr(load, "decode_images", lambda *a, **k: decoded.append(1) or real(*a, **k))
    result = CliRunner().invoke(app, ["scan", str(tmp_path / "data"), "--model", "resnet18",
                                      "--weights", "imagenet1k_v1", "--image-size", "32",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "neither a file nor a weights name of resnet18" in " ".join(result.output.split())
    assert not decoded


@pytest.mark.parametrize(("model", "saved", "width"), [
    ("resnet18", "resnet34", None),  # a deeper model's file
    ("small-cnn", "small-cnn", 16),  # the file of another --width
])
def test_a_weights_file_of_another_model_is_refused_before_the_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str, saved: str, width: int | None
) -> None:
    """A file that does not fit the network was refused only when the network was built,
    after every image had been decoded (and cached); a file that fits goes through."""
    from typer.testing import CliRunner

    import noisyclean.data.load as load
    from noisyclean.cli import app

    from .conftest import write_digits_folder

    write_digits_folder(tmp_path / "data", per_class=10, flip=0)
    decoded: list[int] = []
    real = load.decode_images
    monkeypatch.setattr(load, "decode_images", lambda *a, **k: decoded.append(1) or real(*a, **k))
    source = (build_model("small-cnn", 10, width=width) if width
              else torchvision.models.get_model(saved, num_classes=10))
    torch.save(source.state_dict(), tmp_path / "w.pt")
    args = ["scan", str(tmp_path / "data"), "--model", model, "--weights",
            str(tmp_path / "w.pt"), "--image-size", "32", "--out", str(tmp_path / "out"),
            "--quiet", "--no-cache"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"does not fit --model {model}" in " ".join(result.output.split())
    assert not decoded and not (tmp_path / "out").exists()
    # the same file with the --width it was saved at passes the check and decodes
    if width:
        torch.manual_seed(0)
        before = torch.rand(1)
        torch.manual_seed(0)
        check_weights("small-cnn", str(tmp_path / "w.pt"), 10, width)
        assert torch.rand(1) == before  # the throwaway network drew nothing from torch's RNG


def test_torchvision_weights_names_for_a_small_model_point_to_a_torchvision_model() -> None:
    with pytest.raises(NoisyCleanError, match="such as --model resnet18"):
        check_weights("small-cnn", "DEFAULT")


def test_a_damaged_file_in_the_hub_cache_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    cached.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), cached)
    cached.write_bytes(cached.read_bytes()[:1000])
    with pytest.raises(NoisyCleanError) as caught:
        build_model("resnet18", 4, weights="DEFAULT")
    message = str(caught.value)
    assert f"the cached file {cached} cannot be read: delete it to download it again" in message
    assert ".." not in message.replace(str(tmp_path), "")
