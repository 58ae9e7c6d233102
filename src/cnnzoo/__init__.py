"""cnnzoo: the classic convolutional networks, faithful and tested, in PyTorch.

>>> import cnnzoo
>>> cnnzoo.list_models("resnet*")[:3]
['resnet101', 'resnet110', 'resnet1202']
>>> model = cnnzoo.create_model("resnet18", num_classes=10)
"""

# first, before torch: Ctrl-C while the `cnnzoo` command starts exits 130 quietly (#13)
from cnnzoo import _interrupt  # noqa: F401

__version__ = "0.1.0"

from cnnzoo.compare import compare, training_memory
from cnnzoo.draw import draw
from cnnzoo.explain import explain
from cnnzoo.export import ExportError, export_model
from cnnzoo.features import FeatureExtractor
from cnnzoo.inference import optimize_for_inference
from cnnzoo.inspect import (
    GeometryError,
    LayerTable,
    check_geometry,
    conv_output_size,
    pool_output_size,
    summary,
)
from cnnzoo.models.base import ClassifierModel, FeatureInfo
from cnnzoo.pretrained import ImageTransform, WeightsEntry, get_weights, list_weights, predict
from cnnzoo.registry import ModelInfo, Paper, create_model, list_models, model_info, register_model
from cnnzoo.surgery import (
    adapt_input_channels,
    extract_layers,
    freeze,
    fuse_bn,
    init_weights,
    truncate,
)
from cnnzoo.weights import WeightsMismatchError, load_weights

__all__ = [
    "ClassifierModel",
    "ExportError",
    "FeatureExtractor",
    "FeatureInfo",
    "GeometryError",
    "ImageTransform",
    "LayerTable",
    "ModelInfo",
    "Paper",
    "WeightsEntry",
    "WeightsMismatchError",
    "__version__",
    "adapt_input_channels",
    "check_geometry",
    "compare",
    "conv_output_size",
    "create_model",
    "draw",
    "explain",
    "export_model",
    "extract_layers",
    "freeze",
    "fuse_bn",
    "get_weights",
    "init_weights",
    "list_models",
    "list_weights",
    "load_weights",
    "model_info",
    "optimize_for_inference",
    "pool_output_size",
    "predict",
    "register_model",
    "summary",
    "training_memory",
    "truncate",
]
