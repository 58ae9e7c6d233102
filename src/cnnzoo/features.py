"""Intermediate outputs of a model as a dict: the backbone interface of detection and
segmentation heads.

>>> import cnnzoo
>>> model = cnnzoo.create_model("resnet50")
>>> body = cnnzoo.FeatureExtractor(model, return_layers={"layer1": "c2", "layer4": "c5"})
>>> {k: tuple(v.shape) for k, v in body(torch.randn(1, 3, 224, 224)).items()}
{'c2': (1, 256, 56, 56), 'c5': (1, 2048, 7, 7)}
>>> stages = cnnzoo.FeatureExtractor(model)  # every stage in model.feature_info
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from cnnzoo.models.base import FeatureInfo
from cnnzoo.surgery.tracing import graph_module, trace

__all__ = ["FeatureExtractor"]


class FeatureExtractor(nn.Module):
    """Runs ``model`` as far as needed and returns the outputs of ``return_layers`` as a dict.

    ``return_layers`` maps layer names to output names (``{"layer1": "c2"}``) or lists layer names
    (each its own output name); by default it is every stage in ``model.feature_info``. A name is
    a module's dotted name or, for the result of a functional op, the enclosing module's name
    and the op (``layer1.0.add``, ``flatten``); ``cnnzoo.surgery.node_names(model)`` lists them.
    Layers after the last requested one are not run. The extractor shares its layers (and
    weights) with ``model``.

    ``feature_info`` describes the returned outputs that are stages of the model (module name,
    channels, reduction), in the order of ``return_layers``.
    """

    def __init__(
        self,
        model: nn.Module,
        return_layers: Mapping[str, str] | Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        stages: list[FeatureInfo] = list(getattr(model, "feature_info", []))
        if return_layers is None:
            if not stages:
                raise ValueError(
                    f"{type(model).__name__} publishes no feature_info: name the return_layers"
                )
            return_layers = [info.module for info in stages]
        if isinstance(return_layers, str):
            raise TypeError("return_layers must be a list or dict of layer names, not a string")
        layers = (
            dict(return_layers)
            if isinstance(return_layers, Mapping)
            else {name: name for name in return_layers}
        )
        if not layers:
            raise ValueError("return_layers is empty")
        if len(set(layers.values())) != len(layers):
            raise ValueError(f"two layers share an output name in {layers}")
        traced = trace(model)
        outputs = {output: traced.node(layer) for layer, output in layers.items()}
        self.body = graph_module(traced, outputs, f"{type(model).__name__}Features")
        self.return_layers = layers
        by_module = {info.module: info for info in stages}
        self.feature_info = [by_module[layer] for layer in layers if layer in by_module]
        self.model_name: str = getattr(model, "model_name", type(model).__name__)
        self.in_channels: int | None = getattr(model, "in_channels", None)
        self.min_input_size: tuple[int, int] | None = getattr(model, "min_input_size", None)

    def _check_input(self, x: Tensor) -> None:
        # The model's own check less its fixed-size rule: the layers before a fixed-size head
        # take other sizes.
        if x.dim() != 4:
            raise ValueError(
                f"{self.model_name} features expect a 4-D input (N, C, H, W), got {tuple(x.shape)}"
            )
        if self.in_channels is not None and x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.model_name} was built for {self.in_channels} input channels, "
                f"got {x.shape[1]} (input shape {tuple(x.shape)})"
            )
        if self.min_input_size is not None:
            (min_h, min_w), (h, w) = self.min_input_size, x.shape[-2:]
            if h < min_h or w < min_w:
                raise ValueError(
                    f"{self.model_name} needs an input of at least {min_h}x{min_w}, got {h}x{w}"
                )

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        self._check_input(x)
        outputs: dict[str, Tensor] = self.body(x)
        return outputs
