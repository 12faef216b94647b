"""What the training writes with ``torch.save`` goes through :func:`on_cpu`: every tensor
detached onto the CPU, the containers and a state dict's layer versions kept."""

from __future__ import annotations

import io

import torch
from torch import nn

from noisyclean.torchfile import on_cpu


def test_on_cpu_keeps_the_structure_and_the_state_dicts_versions() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    state = net.state_dict()
    moved = on_cpu(state)
    assert type(moved) is type(state) and list(moved) == list(state)
    assert moved._metadata == state._metadata  # BatchNorm's version, read by load_state_dict
    assert all(torch.equal(moved[k], state[k]) for k in state)
    grad = torch.ones(2, requires_grad=True) * 3
    nested = on_cpu({"a": [grad, (grad, 5)], "b": "text", "c": None})
    assert not nested["a"][0].requires_grad and isinstance(nested["a"][1], tuple)
    assert nested["a"][1][1] == 5 and nested["b"] == "text" and nested["c"] is None
    assert isinstance(nested["a"], list)
    # a saved copy reads back with weights_only and loads into a fresh network
    buffer = io.BytesIO()
    torch.save(moved, buffer)
    buffer.seek(0)
    fresh = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(fresh[0].weight, net[0].weight)
