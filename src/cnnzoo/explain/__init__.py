"""Explaining a prediction: Grad-CAM, saliency and occlusion maps (captum, the ``explain`` extra).

>>> import cnnzoo, torch
>>> model = cnnzoo.create_model("resnet20")
>>> heat = cnnzoo.explain(model, torch.randn(3, 32, 32), method="gradcam")  # doctest: +SKIP
>>> heat.shape  # doctest: +SKIP
torch.Size([32, 32])
"""

from cnnzoo.explain.attribution import METHODS, default_layer, explain, layer_candidates
from cnnzoo.explain.render import save_overlay

__all__ = ["METHODS", "default_layer", "explain", "layer_candidates", "save_overlay"]
