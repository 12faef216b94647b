"""Two or more small CNNs trained as one grouped network (``GroupedSmallCNN``): the same
outputs, the same optimiser step and the same warm-up as separate networks, and the scan
that uses it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from noisyclean.cli import app
from noisyclean.config import ScanConfig
from noisyclean.data.batches import DeviceImages
from noisyclean.models import GroupedSmallCNN, SmallCNN
from noisyclean.progress import Progress
from noisyclean.scanning import trains_grouped
from noisyclean.train.loop import Precision, make_learner, run_epochs
from noisyclean.train.methods.warmup import Warmup

runner = CliRunner()


def _networks(k: int = 2, width: int = 8, classes: int = 5) -> list[SmallCNN]:
    nets = []
    for j in range(k):
        torch.manual_seed(10 + j)
        net = SmallCNN(classes, width)
        for module in net.modules():  # batch-norm state that differs between the networks
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
                module.weight.data.normal_()
                module.bias.data.normal_()
        nets.append(net)
    return nets


def test_grouped_network_computes_what_the_separate_networks_do() -> None:
    """Each group's output on its own batch equals its network's, in training mode (batch
    statistics per group) and in eval mode (running statistics, updated alike), and
    ``networks()`` gives the networks back exactly."""
    nets = _networks(k=3)
    grouped = GroupedSmallCNN.from_networks(nets)
    batches = [torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(j))
               for j in range(3)]
    for training in (True, False):
        grouped.train(training)
        out = grouped(GroupedSmallCNN.stack(batches))
        assert out.shape == (6, 3, 5)
        for j, net in enumerate(nets):
            net.train(training)
            torch.testing.assert_close(out[:, j], net(batches[j]), rtol=1e-5, atol=1e-5)
    for back, net in zip(grouped.networks(), nets, strict=True):
        assert not back.training
        for (name, a), b in zip(back.state_dict().items(), net.state_dict().values(),
                                strict=True):
            torch.testing.assert_close(a, b, msg=name)


def test_one_sgd_step_of_the_grouped_network_is_one_step_of_each_network() -> None:
    """The summed loss's gradient splits by group, and weight decay, momentum and the
    no-decay groups act per parameter entry: one step of the grouped learner leaves each
    network where its own learner's step leaves it."""
    nets = _networks()
    grouped = GroupedSmallCNN.from_networks(nets)
    learners = [make_learner(net, 0.1, 0.9, 5e-4, 10) for net in nets]
    joint = make_learner(grouped, 0.1, 0.9, 5e-4, 10)
    batches = [torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(j))
               for j in range(2)]
    labels = [torch.randint(0, 5, (8,), generator=torch.Generator().manual_seed(5 + j))
              for j in range(2)]
    for _ in range(2):  # the second step uses the momentum buffers
        for learner in [*learners, joint]:
            learner.set_lr()
            learner.optimizer.zero_grad()
        for learner, x, y in zip(learners, batches, labels, strict=True):
            F.cross_entropy(learner.model(x), y).backward()
            learner.optimizer.step()
            learner.step += 1
        out = grouped(GroupedSmallCNN.stack(batches))
        sum(F.cross_entropy(out[:, j], labels[j]) for j in range(2)).backward()
        joint.optimizer.step()
        joint.step += 1
    for back, net in zip(grouped.networks(), nets, strict=True):
        for (name, a), b in zip(back.state_dict().items(), net.state_dict().values(),
                                strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_grouped_warmup_draws_and_trains_like_separate_networks() -> None:
    """The grouped warm-up takes each network's batch in the order and with the
    augmentation separate networks get (one generator, drawn in the same order), at half
    resolution first: after two epochs every network, and the epoch log, match."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    data = DeviceImages(images, rng.integers(0, 5, 40), torch.device("cpu"))
    precision = Precision(torch.device("cpu"))
    results = {}
    for grouped in (False, True):
        method = Warmup(data, n_learners=2, batch_size=8, seed=3, low_res_epochs=1,
                        grouped=grouped)
        nets = _networks()
        models = [GroupedSmallCNN.from_networks(nets)] if grouped else nets
        steps = method.total_steps(2)
        assert steps == 40 // 16 + 40 // 8  # 16-image half-resolution batches, then 8
        learners = [make_learner(m, 0.05, 0.9, 5e-4, steps) for m in models]
        log = run_epochs(learners, method, range(2), precision, Progress(quiet=True))
        trained = models[0].networks() if grouped else models
        results[grouped] = (trained, log)
        assert learners[0].step == steps
    for a, b in zip(results[True][0], results[False][0], strict=True):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-4, msg=name)
    for a, b in zip(results[True][1], results[False][1], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["acc"] == b["acc"]


def test_scan_groups_two_small_cnns_only() -> None:
    assert trains_grouped(ScanConfig(networks=2))
    assert trains_grouped(ScanConfig(networks=2, model="small-cnn"))
    assert not trains_grouped(ScanConfig(networks=1))
    assert not trains_grouped(ScanConfig(networks=2, model="preact-resnet18"))


def test_scan_with_two_grouped_networks_end_to_end(
    digits_folder: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """The CLI with ``--networks 2`` on the small CNN: one mixture per network, a full
    table, forward correction estimated per network."""
    root, _ = digits_folder
    out = tmp_path / "two"
    result = runner.invoke(app, ["scan", str(root), "--out", str(out), "--networks", "2",
                                 "--epochs", "3", "--width", "8", "--batch-size", "16",
                                 "--quiet", "--no-amp"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["networks"] == 2
    assert len(summary["mixture"]) == 2
    assert len(summary["correction"]["transition"]) == 2
    # the cut weighs the estimate the summary reports: the mean of the two networks' own
    assert summary["cut"]["counts"]["confident_joint"] == \
        summary["estimated_wrong_labels"]["count"]
    assert "mean of 2 networks" in summary["estimated_wrong_labels"]["method"]
    assert summary["counts"]["used"] == len((out / "scores.csv").read_text().splitlines()) - 1
    folds = tmp_path / "folds"  # each fold trains its two networks grouped, scores out of fold
    result = runner.invoke(app, ["scan", str(root), "--out", str(folds), "--networks", "2",
                                 "--folds", "2", "--epochs", "2", "--width", "8",
                                 "--batch-size", "16", "--quiet", "--no-amp"])
    assert result.exit_code == 0, result.output
    assert len(json.loads((folds / "summary.json").read_text())["mixture"]) == 2
