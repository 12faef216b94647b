"""Backbone registry: a small fast CNN, PreAct ResNet-18 (the DivideMix network) and
torchvision classification models, optionally with pretrained weights.

``build_model(name, num_classes, ...)`` is the one entry point. Names:

- ``small-cnn``: a 3-block VGG-style CNN with batch norm (default for images up to 64 px),
- ``preact-resnet18``: PreAct ResNet-18 as used by DivideMix for CIFAR,
- any torchvision classification model name (``resnet18``, ``resnet50``,
  ``mobilenet_v3_small``, ``efficientnet_b0``, ...), built with a classifier head of
  ``num_classes`` outputs (pretrained weights: their head is replaced by one).

``weights`` is either a torchvision weights name (``DEFAULT``, ``IMAGENET1K_V1``, ...,
downloaded to / read from torch's hub cache) or the path of a local state dict file saved
with ``torch.save(model.state_dict(), path)``. A file's tensors that do not fit (a head for
another number of classes) are left as built, and the ``warn`` callback says which.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .errors import NoisyCleanError, listing
from .norm import ChannelsLastBatchNorm2d
from .torchfile import load_torch_file

SMALL_MODELS = ("small-cnn", "preact-resnet18")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _conv_bn(c_in: int, c_out: int, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False, groups=groups),
        ChannelsLastBatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class PooledNorm(nn.BatchNorm1d):
    """Batch norm of pooled ``(B, C)`` features. A training batch of one sample, which
    plain batch norm cannot normalise by its own statistics, uses the running ones."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return nn.functional.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0,
                self.eps,
            )
        return super().forward(x)


class SmallCNN(nn.Module):
    """A small fast CNN: a stem and three conv blocks (widths w, 2w, 4w), each halving the
    resolution, then global max pooling, a batch norm of the pooled features (so that the
    classifier sees standardised features at any image size) and a linear classifier."""

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_conv_bn(3, w),
            *_conv_bn(w, w),
            nn.MaxPool2d(2),
            *_conv_bn(w, 2 * w),
            *_conv_bn(2 * w, 2 * w),
            nn.MaxPool2d(2),
            *_conv_bn(2 * w, 4 * w),
            nn.MaxPool2d(2),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
            # The maximum over a larger map is larger: without this, the classifier's input
            # jumps when the image side doubles (progressive resizing's switch to full
            # resolution) and training can diverge, as it did on images with large flat
            # areas (upscaled digits: loss 1.1 -> 10.7 at the switch).
            PooledNorm(4 * w),
        )
        self.classifier = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class GroupedSmallCNN(nn.Module):
    """``k`` :class:`SmallCNN` of one width trained as one network: every convolution is
    grouped (group ``j`` is network ``j``), so one forward and backward pass trains all of
    them, each on its own batch. On 2 CPU cores the warm-up of two networks of width 24
    took 8.6% less time this way than as two separate networks (``benchmarks/RESULTS.md``).

    The input is the networks' batches stacked on the channel axis, ``(B, 3k, H, W)``
    (:meth:`stack`); the output is ``(B, k, C)``. Batch norm, pooling and weight decay act
    per channel, so network ``j`` computes what the separate :class:`SmallCNN` would
    (:meth:`from_networks` and :meth:`networks` convert exactly).
    """

    def __init__(self, num_classes: int, width: int, k: int) -> None:
        super().__init__()
        if k < 1:
            raise ValueError("k must be at least 1")
        w, self.k, self.num_classes = width * k, k, num_classes
        self.features = nn.Sequential(
            BlockDiagonalConv2d(3, width, k), ChannelsLastBatchNorm2d(w), nn.ReLU(inplace=True),
            *_conv_bn(w, w, k), nn.MaxPool2d(2),
            *_conv_bn(w, 2 * w, k), *_conv_bn(2 * w, 2 * w, k), nn.MaxPool2d(2),
            *_conv_bn(2 * w, 4 * w, k), nn.MaxPool2d(2),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), PooledNorm(4 * w),
        )
        self.classifier = nn.Conv1d(4 * w, k * num_classes, 1, groups=k)

    @staticmethod
    def stack(batches: list[torch.Tensor]) -> torch.Tensor:
        """The networks' image batches ``(B, 3, H, W)`` as one input ``(B, 3k, H, W)``."""
        x = torch.cat(batches, dim=1)
        if batches[0].is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.features(x)
        return self.classifier(z[:, :, None])[:, :, 0].view(len(x), self.k, self.num_classes)

    def _pairs(self, net: SmallCNN) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(grouped tensor, network tensor) pairs, parameters and buffers, in order."""
        own = list(self.features) + [self.classifier]
        other = list(net.features) + [net.classifier]
        pairs = []
        for a, b in zip(own, other, strict=True):  # state dicts leave out the block mask
            theirs = b.state_dict(keep_vars=True)
            pairs += [(tensor, theirs[name])
                      for name, tensor in a.state_dict(keep_vars=True).items()]
        return pairs

    @classmethod
    def from_networks(cls, nets: list[SmallCNN]) -> GroupedSmallCNN:
        """The grouped network holding exact copies of ``nets`` (one width, one class
        count), on their device."""
        first = nets[0]
        width, classes = first.features[0].out_channels, first.classifier.out_features
        grouped = cls(classes, width, len(nets)).to(first.classifier.weight.device)
        with torch.no_grad():
            for j, net in enumerate(nets):
                for mine, theirs in grouped._pairs(net):
                    block = _block(mine, theirs, j)
                    block.copy_(theirs.reshape(block.shape))
        return grouped

    def networks(self) -> list[SmallCNN]:
        """Each group as a separate :class:`SmallCNN` (copies, in this network's mode and
        on its device)."""
        width = self.features[0].out_channels // self.k
        nets = []
        for j in range(self.k):
            net = SmallCNN(self.num_classes, width).to(self.classifier.weight.device)
            with torch.no_grad():
                for mine, theirs in self._pairs(net):
                    theirs.copy_(_block(mine, theirs, j).reshape(theirs.shape))
            nets.append(net.train(self.training))
        return nets


def _block(grouped: torch.Tensor, single: torch.Tensor, j: int) -> torch.Tensor:
    """Network ``j``'s part of a grouped tensor: its block of the leading (output) axis,
    and of the input axis too where that is every network's (the first convolution); a
    scalar (a batch-norm step count) is shared."""
    if grouped.ndim == 0:
        return grouped
    n = single.shape[0]
    if grouped.ndim > 1 and grouped.shape[1] != single.shape[1]:
        c = single.shape[1]
        return grouped[j * n : (j + 1) * n, j * c : (j + 1) * c]
    return grouped[j * n : (j + 1) * n]


class BlockDiagonalConv2d(nn.Conv2d):
    """``k`` 3x3 convolutions from ``c_in`` to ``c_out`` channels side by side: one dense
    convolution from ``k c_in`` to ``k c_out`` channels whose weight is masked to its
    diagonal blocks (block ``j`` reads input group ``j`` only). The same as a grouped
    convolution, but on a CPU a grouped one with 3 input channels per group took about
    a sixth more time per training step of the whole small CNN (oneDNN, 2 cores)."""

    def __init__(self, c_in: int, c_out: int, k: int) -> None:
        super().__init__(c_in * k, c_out * k, 3, padding=1, bias=False)
        mask = torch.zeros_like(self.weight)
        for j in range(k):
            mask[j * c_out : (j + 1) * c_out, j * c_in : (j + 1) * c_in] = 1.0
        self.register_buffer("mask", mask, persistent=False)
        with torch.no_grad():
            self.weight.mul_(mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, None)


class PreActBlock(nn.Module):
    """Pre-activation residual block (He et al. 2016)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """PreAct ResNet-18 for small images (3x3 stem, no max-pool), the DivideMix backbone."""

    def __init__(self, num_classes: int, width: int = 64) -> None:
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(3, w, 3, padding=1, bias=False)
        layers: list[nn.Module] = []
        c_in = w
        for i, c_out in enumerate((w, 2 * w, 4 * w, 8 * w)):
            stride = 1 if i == 0 else 2
            layers += [PreActBlock(c_in, c_out, stride), PreActBlock(c_out, c_out)]
            c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(c_in)
        self.linear = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.conv1(x))
        out = torch.relu(self.bn(out))
        out = torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1)
        return self.linear(out)


def _replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Swap a torchvision model's last linear layer for one with ``num_classes`` outputs."""
    for attr in ("fc", "classifier", "head", "heads"):
        head = getattr(model, attr, None)
        if head is None:
            continue
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Linear(head.in_features, num_classes))
            return model
        if isinstance(head, nn.Sequential):
            for i in range(len(head) - 1, -1, -1):
                if isinstance(head[i], nn.Linear):
                    head[i] = nn.Linear(head[i].in_features, num_classes)
                    return model
    raise NoisyCleanError(
        f"cannot find the classifier head of {type(model).__name__}; use another --model"
    )


#: torchvision models built without their auxiliary classifiers.
AUX_LOGITS_MODELS = ("googlenet", "inception_v3")


def check_input_size(name: str, num_classes: int, image_size: int,
                     resized_by: str | None = None) -> None:
    """Refuse, with one clear message, a torchvision model that cannot train on images of
    ``image_size`` px (a kernel or pooling window larger than its feature map, a vision
    transformer's fixed input size, ...): one training-mode step's forward pass on two blank
    images, on a throwaway network, leaving torch's random state as it was. The models of
    this package run at any size the data allows. ``resized_by``: the option whose epochs
    train at that size (``--low-res-epochs``), which the message then names."""
    if name in ("small-cnn", "preact-resnet18"):
        return
    where = f", the side of the {resized_by} epochs" if resized_by else ""
    advice = f"set {resized_by} 0" if resized_by else "try a larger --image-size"
    with torch.random.fork_rng(devices=[]):
        model = _torchvision_model(name, num_classes, None)
        try:
            out = model.train()(torch.zeros(2, 3, image_size, image_size))
        except Exception as error:  # noqa: BLE001 - any failure is the same answer
            raise NoisyCleanError(
                f"--model {name} cannot run on {image_size}x{image_size} px images{where} "
                f"({str(error).strip() or type(error).__name__}); {advice} or another --model"
            ) from None
    if not isinstance(out, torch.Tensor) or out.shape != (2, num_classes):
        raise NoisyCleanError(f"--model {name} does not return one row of class logits per "
                              "image; use another --model")


def _torchvision_model(name: str, num_classes: int, weights: str | None,
                       warn: Callable[[str], None] | None = None,
                       download_progress: bool = True) -> nn.Module:
    import torchvision

    available = set(torchvision.models.list_models(module=torchvision.models))
    if name not in available:
        raise NoisyCleanError(
            f"unknown model {name!r}: use small-cnn, preact-resnet18 or a torchvision "
            f"classification model such as resnet18, resnet50, mobilenet_v3_small"
        )
    # GoogLeNet and Inception v3 return their auxiliary classifiers' logits too in training
    # mode; the loss here is on the main head's only (and their initialisation is said
    # explicitly, as torchvision asks, where no weights replace it)
    options = {"aux_logits": False} if name in AUX_LOGITS_MODELS else {}
    own_init = {**options, "init_weights": True} if options else {}
    if weights is not None and Path(weights).expanduser().is_file():
        weights = str(Path(weights).expanduser())
    if weights is None or Path(weights).is_file():
        # built with its own head of num_classes outputs, which a file saved from a network
        # trained on these classes fills too
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes,
                                             **own_init)
        if weights is not None:
            _load_state_dict_file(model, name, Path(weights), warn)
        return model
    chosen = named_weights(name, weights)
    try:
        model = torchvision.models.get_model(name, weights=chosen,
                                             progress=download_progress, **options)
    except Exception as error:  # network failure, corrupt download, ...
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(chosen.url).name
        reason = str(error).strip().rstrip(".")
        if cached.is_file():
            advice = (f"the cached file {cached} cannot be read: delete it to download it "
                      "again, or pass a local file to --weights")
        else:
            advice = (f"without internet, put the file {cached.name} in {cached.parent} or "
                      "pass a local file to --weights")
        raise NoisyCleanError(
            f"cannot load weights {chosen} for {name}: {reason}; {advice}"
        ) from None
    return _replace_head(model, num_classes)


def named_weights(name: str, weights: str) -> object:
    """The torchvision weights enum member that ``--weights`` names for the torchvision
    model ``name`` (``DEFAULT`` or one of its members).

    Raises:
        NoisyCleanError: ``weights`` names none of them.
    """
    import torchvision

    weights_enum = torchvision.models.get_model_weights(name)
    try:
        return weights_enum.DEFAULT if weights == "DEFAULT" else weights_enum[weights]
    except KeyError:
        names = ", ".join(dict.fromkeys(["DEFAULT", *weights_enum.__members__]))
        raise NoisyCleanError(
            f"--weights {weights!r} is neither a file nor a weights name of {name} "
            f"(known: {names})"
        ) from None


def check_weights(name: str, weights: str | None, num_classes: int | None = None,
                  width: int = 32) -> None:
    """Refuse, before a long decode, a ``--weights`` that is neither a file nor, for a
    torchvision model, one of its weights names (the model's name already checked). Given
    ``num_classes`` (and ``width``, for ``small-cnn``), a file is read into a throwaway
    network as :func:`build_model` would read it, and refused for the same reasons (a file
    of another model), torch's random state left as it was."""
    if weights is None:
        return
    path = Path(weights).expanduser()
    if path.is_file():
        if num_classes is not None:
            with torch.random.fork_rng(devices=[]):
                model = build_model(name, num_classes, None, width)
            _load_state_dict_file(model, name, path, None)
        return
    if name in SMALL_MODELS:
        raise NoisyCleanError(
            f"--weights for {name} must be a local state-dict file; {weights!r} is not a file "
            "(torchvision's weights names go with a torchvision --model, such as --model "
            "resnet18)"
        )
    named_weights(name, weights)


def _shape(tensor: object) -> str:
    """``10x512``: a tensor's shape as a message writes it (``?`` for what is no tensor)."""
    shape = getattr(tensor, "shape", None)
    return "x".join(map(str, shape)) if shape is not None else "?"


#: The keys under which training checkpoints keep a network's state dict (PyTorch's own
#: tutorial's ``model_state_dict``, Lightning's ``state_dict``, and ``model``).
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")


def _state_dict_in(state: object) -> dict | None:
    """The state dict a ``torch.save`` file holds: the file's dict itself, or the one under
    one of :data:`STATE_DICT_KEYS` (a training checkpoint), with the ``module.`` prefix of a
    network saved inside ``DataParallel`` or ``DistributedDataParallel`` removed; None if
    it holds none."""
    if isinstance(state, dict):
        for key in STATE_DICT_KEYS:
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict):
        return None
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def _without_wrapper_prefix(state: dict, own: dict) -> dict:
    """``state`` with the first component of its keys removed where every key has the same
    one and only so do they name the network's tensors (``model.`` of a Lightning module
    that holds the network as ``self.model``)."""
    keys = [k for k in state if isinstance(k, str)]
    if not keys or len(keys) != len(state) or any(k in own for k in keys):
        return state
    first = {k.split(".", 1)[0] for k in keys}
    if len(first) != 1 or any("." not in k for k in keys):
        return state
    stripped = {k.split(".", 1)[1]: v for k, v in state.items()}
    return stripped if any(k in own for k in stripped) else state


def _load_state_dict_file(model: nn.Module, name: str, path: Path,
                          warn: Callable[[str], None] | None) -> None:
    """Load a state dict saved with ``torch.save`` into ``model`` (``--model name``).
    Tensors the file lacks or holds in another shape (a classifier head for another number
    of classes) are left as built, and ``warn`` is told which, as it is of the file's
    tensors that the network has not; a file that leaves more than a fifth of the network
    unfilled, or of which more than a fifth is not in the network (a deeper model of the
    same family), is refused."""
    held = load_torch_file(path, "weights file")
    state = _state_dict_in(held)
    if state is None:
        raise NoisyCleanError(f"weights file {path} does not hold a state dict")
    own = model.state_dict()
    state = _without_wrapper_prefix(state, own)
    usable = {k: v for k, v in state.items()
              if k in own and getattr(v, "shape", None) == own[k].shape}
    missing = [k for k in own if k not in usable]
    unused = [k for k in state if k not in own]
    if not usable or len(missing) > 0.2 * len(own) or len(unused) > 0.2 * len(state):
        width = " and --width" if name == "small-cnn" else ""
        found = ""
        if not usable and isinstance(held, dict):
            found = f" (the file holds a dict with keys {listing(held, 5)})"
        raise NoisyCleanError(
            f"weights file {path} does not fit --model {name}: {len(missing)} of its "
            f"{len(own)} tensors are not in the file or have another shape, and "
            f"{len(unused)} of the file's {len(state)} are not in the network{found}; give "
            f"the --model{width} the file was saved from"
        )
    model.load_state_dict(usable, strict=False)
    if unused and warn is not None:
        more = f" and {len(unused) - 3} more" if len(unused) > 3 else ""
        warn(f"--weights {path}: {', '.join(unused[:3])}{more} of the file are not in "
             f"--model {name} and were not loaded")
    if missing and warn is not None:
        named = [f"{k} (file {_shape(state[k])}, network {_shape(own[k])})" if k in state
                 else f"{k} (not in the file)" for k in missing[:3]]
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        warn(f"--weights {path}: {', '.join(named)}{more} not loaded, left at random weights")


def build_model(
    name: str, num_classes: int, weights: str | None = None, width: int = 32,
    warn: Callable[[str], None] | None = None, download_progress: bool = True,
) -> nn.Module:
    """Build a classifier with ``num_classes`` outputs.

    Args:
        name: ``small-cnn``, ``preact-resnet18`` or a torchvision model name.
        num_classes: number of output logits.
        weights: torchvision weights name or local state-dict file; ``None`` for random init.
            For ``small-cnn`` and ``preact-resnet18`` only a local file is accepted.
        width: base width of ``small-cnn`` (``preact-resnet18`` always uses 64).
        warn: told, in one line, which tensors of a weights file were not loaded (absent,
            or of another shape: a head for another number of classes).
        download_progress: show torch's progress bar while named torchvision weights
            download (False under ``--quiet``).

    Returns:
        The model in training mode, on the CPU.
    """
    if name == "small-cnn":
        model: nn.Module = SmallCNN(num_classes, width=width)
    elif name == "preact-resnet18":
        model = PreActResNet18(num_classes)
    else:
        return _torchvision_model(name, num_classes, weights, warn, download_progress)
    if weights is not None:
        check_weights(name, weights)
        _load_state_dict_file(model, name, Path(weights).expanduser(), warn)
    return model
