"""Taking models apart: pick out layers, cut a model short, freeze a prefix, change the input
channels of the first conv."""

from __future__ import annotations

from collections import OrderedDict
from typing import overload

import torch
from torch import Tensor, nn

from cnnzoo._format import did_you_mean
from cnnzoo.surgery.tracing import graph_module, trace

__all__ = [
    "FrozenBatchNorm2d",
    "NamedLayers",
    "adapt_input_channels",
    "extract_layers",
    "freeze",
    "truncate",
]


class NamedLayers(nn.Sequential):
    """An ``nn.Sequential`` whose layers keep their dotted names from the model they came from.

    Its state_dict keys are the model's own (``features.block1.conv.weight``), so weights move
    between the two with ``load_state_dict(..., strict=False)``. Index it by position, slice it,
    or look a layer up by name: ``layers["features.block1.conv"]``.
    """

    def add_module(self, name: str, module: nn.Module | None) -> None:
        # nn.Module forbids dots in a child's name (get_submodule splits on them); here the dots
        # are the point, and nothing below this container is looked up by path.
        if not isinstance(name, str) or not name or any(not part for part in name.split(".")):
            raise KeyError(f"bad layer name {name!r}")
        if module is None:
            raise TypeError(f"layer {name!r} is None")
        self._modules[name] = module

    @property
    def names(self) -> list[str]:
        """The layers' dotted names, in order."""
        return list(self._modules)

    @overload
    def __getitem__(self, index: slice) -> NamedLayers: ...

    @overload
    def __getitem__(self, index: int | str) -> nn.Module: ...

    def __getitem__(self, index: int | slice | str) -> nn.Module:
        if isinstance(index, str):
            module = self._modules.get(index)
            if module is None:
                raise KeyError(f"no layer named {index!r}; layers: {', '.join(self._modules)}")
            return module
        return super().__getitem__(index)


def extract_layers(
    model: nn.Module, types: type[nn.Module] | tuple[type[nn.Module], ...] = (nn.Conv2d,)
) -> NamedLayers:
    """The layers of ``model`` that are instances of ``types``, in registration order, under
    their dotted names.

    The layers are shared with ``model``, not copied: changing one changes the other.

    >>> convs = extract_layers(create_model("simple_cnn"))
    >>> convs.names
    ['features.block1.conv', 'features.block2.conv', 'features.block3.conv']
    """
    matches = OrderedDict(
        (name, module)
        for name, module in model.named_modules()
        if name and isinstance(module, types)
    )
    return NamedLayers(matches)


def truncate(model: nn.Module, upto: str) -> torch.fx.GraphModule:
    """``model`` up to and including the layer (or operation) ``upto``; its output is that
    layer's output.

    ``upto`` is a module name (``layer2``, ``features.9``) or the name of a functional result
    (``flatten``, ``layer1.0.add``); ``cnnzoo.surgery.node_names(model)`` lists them. The result
    is an ``fx.GraphModule`` sharing its layers (and weights) with ``model``.

    >>> backbone = truncate(create_model("resnet18"), upto="layer2")
    >>> backbone(torch.randn(1, 3, 224, 224)).shape
    torch.Size([1, 128, 28, 28])
    """
    traced = trace(model)
    node = traced.node(upto)
    return graph_module(traced, node, f"{type(model).__name__}Upto")


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters, in train mode too.

    ``freeze`` swaps it in for the batch norms of a frozen part: an ordinary BatchNorm2d in
    train mode would still normalise with batch statistics and update its running averages,
    changing the frozen features. Same state_dict keys as ``nn.BatchNorm2d`` (all buffers here),
    so checkpoints load either way.
    """

    weight: Tensor
    bias: Tensor
    running_mean: Tensor
    running_var: Tensor
    num_batches_tracked: Tensor

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    @classmethod
    def from_batch_norm(cls, bn: nn.BatchNorm2d) -> FrozenBatchNorm2d:
        """A frozen copy of ``bn``'s eval-mode function (same device and dtype)."""
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError("cannot freeze a BatchNorm2d without running statistics")
        frozen = cls(bn.num_features, bn.eps).to(
            device=bn.running_mean.device, dtype=bn.running_mean.dtype
        )
        with torch.no_grad():
            if bn.weight is not None:
                frozen.weight.copy_(bn.weight)
            if bn.bias is not None:
                frozen.bias.copy_(bn.bias)
            frozen.running_mean.copy_(bn.running_mean)
            frozen.running_var.copy_(bn.running_var)
            if bn.num_batches_tracked is not None:
                frozen.num_batches_tracked.copy_(bn.num_batches_tracked)
        return frozen

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def _closest(name: str, names: list[str]) -> str:
    return did_you_mean(name, names)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, module)


def _classifier_name(model: nn.Module) -> str | None:
    get_classifier = getattr(model, "get_classifier", None)
    if get_classifier is None:
        return None
    head = get_classifier()
    return next((n for n, m in model.named_modules() if m is head and n), None)


def freeze(model: nn.Module, upto: str | None = None, *, freeze_bn: bool = True) -> list[str]:
    """Stop training every layer up to and including ``upto`` (in registration order, which is
    the forward order of every cnnzoo model); ``upto=None`` freezes all but the classifier.

    Frozen parameters get ``requires_grad=False``. With ``freeze_bn`` (default), the frozen
    part's ``BatchNorm2d`` layers become ``FrozenBatchNorm2d``, so that ``model.train()`` does not
    change what the frozen part computes. Returns the frozen parameters' names. Call it before
    building the optimiser.

    >>> frozen = freeze(model, upto="layer2")  # fine-tune layer3, layer4 and fc only
    """
    named = list(model.named_modules())
    names = [name for name, _ in named]
    if upto is None:
        head = _classifier_name(model)
        chosen = [
            (n, m) for n, m in named if head is None or (n != head and not n.startswith(head + "."))
        ]
    else:
        if upto not in names or not upto:
            raise ValueError(
                f"no module named {upto!r} in {type(model).__name__}" + _closest(upto, names)
            )
        last = max(i for i, n in enumerate(names) if n == upto or n.startswith(upto + "."))
        chosen = named[: last + 1]

    frozen: list[str] = []
    for module_name, module in chosen:
        for param_name, param in module.named_parameters(recurse=False):
            param.requires_grad_(False)
            frozen.append(f"{module_name}.{param_name}" if module_name else param_name)
        if freeze_bn and module_name and type(module) is nn.BatchNorm2d:
            _set_submodule(model, module_name, FrozenBatchNorm2d.from_batch_norm(module))
    return frozen


def _first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise ValueError(f"{type(model).__name__} has no Conv2d layer whose input channels to change")


def adapt_input_channels(model: nn.Module, in_channels: int) -> nn.Module:
    """Make ``model`` take ``in_channels`` input channels, keeping its first conv's weights useful.

    One channel: the kernels are summed over the old input channels, so a grey image repeated
    on every old channel gives exactly the old output. More channels: the old kernels are
    repeated cyclically and scaled by old/new, so an input made of the old channels repeated
    gives exactly the old output (and the activation scale stays put for similar inputs). Fewer
    channels (but more than one): the first ``in_channels`` kernels, scaled the same way.
    Changes the model in place and returns it; updates ``model.in_channels``.

    >>> model = adapt_input_channels(create_model("resnet18"), 1)  # for greyscale input
    """
    if in_channels < 1:
        raise ValueError(f"in_channels must be positive, got {in_channels}")
    name, conv = _first_conv(model)
    old = conv.in_channels
    expected = getattr(model, "in_channels", old)
    if expected != old:
        raise ValueError(
            f"the first conv ({name}) takes {old} channels but the model takes {expected}: "
            "its input is not the image"
        )
    if conv.groups != 1:
        raise ValueError(f"the first conv ({name}) is grouped (groups={conv.groups})")
    if getattr(model, "transform_input", False) and in_channels != 3:
        raise ValueError("transform_input re-normalises RGB input: build the model without it")
    if in_channels == old:
        return model
    weight = conv.weight.detach()
    if in_channels == 1:
        new_weight = weight.sum(dim=1, keepdim=True)
    else:
        index = torch.arange(in_channels, device=weight.device) % old
        new_weight = weight[:, index] * (old / in_channels)
    conv.weight = nn.Parameter(new_weight.contiguous(), requires_grad=conv.weight.requires_grad)
    conv.in_channels = in_channels
    if hasattr(model, "in_channels"):
        setattr(model, "in_channels", in_channels)  # noqa: B010  (nn.Module's typing of attrs)
    return model
