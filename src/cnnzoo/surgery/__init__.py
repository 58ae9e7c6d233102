"""Model surgery: pick out layers, cut a model short, freeze, re-initialise, change the input
channels, fold batch norms.

>>> import cnnzoo
>>> model = cnnzoo.create_model("resnet18")
>>> convs = cnnzoo.extract_layers(model)  # every Conv2d under its dotted name
>>> backbone = cnnzoo.truncate(model, upto="layer3")
>>> frozen = cnnzoo.freeze(model, upto="layer2")
>>> cnnzoo.init_weights(model, "kaiming_normal")
>>> model = cnnzoo.adapt_input_channels(model, 1)
>>> fused = cnnzoo.fuse_bn(model)
"""

from cnnzoo.surgery.fuse import conv_bn_pairs, fuse_bn
from cnnzoo.surgery.init import INIT_SCHEMES, init_weights
from cnnzoo.surgery.layers import (
    FrozenBatchNorm2d,
    NamedLayers,
    adapt_input_channels,
    extract_layers,
    freeze,
    truncate,
)
from cnnzoo.surgery.tracing import node_names

__all__ = [
    "INIT_SCHEMES",
    "FrozenBatchNorm2d",
    "NamedLayers",
    "adapt_input_channels",
    "conv_bn_pairs",
    "extract_layers",
    "freeze",
    "fuse_bn",
    "init_weights",
    "node_names",
    "truncate",
]
