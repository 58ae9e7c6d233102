"""Folding batch norms into the convolutions they follow, for inference."""

from __future__ import annotations

import copy

import torch
import torch.fx
from torch import nn

from cnnzoo.surgery.layers import FrozenBatchNorm2d
from cnnzoo.surgery.tracing import trace

__all__ = ["conv_bn_pairs", "fuse_bn"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, FrozenBatchNorm2d)
BatchNorm = nn.modules.batchnorm._BatchNorm | FrozenBatchNorm2d


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv, batch norm) module names where the batch norm reads exactly the conv's output and
    nothing else reads it, each called once per forward: the pairs ``fuse_bn`` folds."""
    frozen = [name for name, m in model.named_modules() if isinstance(m, FrozenBatchNorm2d)]
    traced = trace(model, leaves=frozen)
    calls = traced.module_calls()
    modules = dict(model.named_modules())
    pairs = []
    for node in traced.graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], _BATCH_NORMS):
            continue
        source = node.args[0] if node.args else None
        if not (
            isinstance(source, torch.fx.Node)
            and source.op == "call_module"
            and isinstance(modules[source.target], _CONVS)
        ):
            continue
        conv, bn = modules[source.target], modules[node.target]
        # A shared layer, or a conv output that also feeds something else, cannot be folded.
        shared = calls[node.target] != 1 or calls[str(source.target)] != 1 or len(source.users) != 1
        if shared or len(node.args) != 1 or node.kwargs:
            continue
        assert isinstance(conv, _CONVS) and isinstance(bn, _BATCH_NORMS)
        if bn.running_mean is None or bn.running_var is None:
            continue  # track_running_stats=False: batch statistics even in eval mode
        if conv.out_channels != bn.num_features:
            continue
        pairs.append((str(source.target), str(node.target)))
    return pairs


def _fold(conv: nn.Conv1d | nn.Conv2d | nn.Conv3d, bn: BatchNorm) -> None:
    """conv' = BN(conv): W' = W * g / sqrt(var + eps), b' = (b - mean) * g / sqrt(var + eps) + beta,
    computed in float64 so the folding itself adds no rounding error of note."""
    assert bn.running_mean is not None and bn.running_var is not None
    with torch.no_grad():
        weight = conv.weight.double()
        out_channels = weight.shape[0]
        bias = conv.bias.double() if conv.bias is not None else weight.new_zeros(out_channels)
        gamma = bn.weight.double() if bn.weight is not None else weight.new_ones(out_channels)
        beta = bn.bias.double() if bn.bias is not None else weight.new_zeros(out_channels)
        scale = gamma * torch.rsqrt(bn.running_var.double() + bn.eps)
        new_weight = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
        new_bias = (bias - bn.running_mean.double()) * scale + beta
        dtype = conv.weight.dtype
        conv.weight = nn.Parameter(new_weight.to(dtype), requires_grad=conv.weight.requires_grad)
        conv.bias = nn.Parameter(new_bias.to(dtype), requires_grad=conv.weight.requires_grad)


def fuse_bn(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """``model`` in eval mode with every batch norm that follows a conv folded into the conv.

    Each folded batch norm becomes ``nn.Identity`` and its conv gains a bias; the model's class,
    interface and every other layer stay as they were. The eval-mode outputs are unchanged up to
    float rounding (relative 1e-5 in float32). Works on a deep copy unless ``inplace``.

    >>> fast = fuse_bn(create_model("resnet50"))  # 53 convs, no BatchNorm2d left
    """
    target = model if inplace else copy.deepcopy(model)
    target.eval()
    for conv_name, bn_name in conv_bn_pairs(target):
        conv, bn = target.get_submodule(conv_name), target.get_submodule(bn_name)
        assert isinstance(conv, _CONVS) and isinstance(bn, _BATCH_NORMS)
        _fold(conv, bn)
        parent_name, _, child = bn_name.rpartition(".")
        setattr(target.get_submodule(parent_name), child, nn.Identity())
    return target
