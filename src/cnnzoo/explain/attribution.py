"""Why did the network say that? Grad-CAM, saliency and occlusion maps for one image.

The attribution arithmetic is captum's (the PyTorch project's interpretability library, the
``explain`` extra); this module adds what learners trip over: choosing the Grad-CAM layer from
the model's own ``feature_info``, checking targets and layer names with one-line errors, and
leaving the model exactly as it was (modes, ``requires_grad``, ``.grad``, no hooks left behind)
on every exit path, exceptions included.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from cnnzoo._optional import require

__all__ = ["METHODS", "default_layer", "explain", "layer_candidates"]

METHODS = ("gradcam", "saliency", "occlusion")

# Every per-module hook table: anything added during an explanation is removed afterwards, even
# when the attribution library itself failed half-way.
_HOOK_TABLES = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def _captum_attr() -> Any:
    return require("captum.attr", "explanations")


@contextlib.contextmanager
def preserved(model: nn.Module) -> Iterator[None]:
    """Run a block with the model in eval mode; afterwards every module's mode, every parameter's
    ``requires_grad`` and ``.grad`` and every module's hook tables are as they were before."""
    modules = list(model.modules())
    modes = [m.training for m in modules]
    parameters = list(model.parameters())
    flags = [p.requires_grad for p in parameters]
    grads = [p.grad for p in parameters]
    hooks = [{table: set(getattr(m, table, {})) for table in _HOOK_TABLES} for m in modules]
    try:
        model.eval()
        yield
    finally:
        for module, mode, before in zip(modules, modes, hooks, strict=True):
            module.training = mode
            for table, keys in before.items():
                registered = getattr(module, table, None)
                if registered is not None:
                    for key in set(registered) - keys:
                        del registered[key]
        for parameter, flag, grad in zip(parameters, flags, grads, strict=True):
            parameter.requires_grad_(flag)
            parameter.grad = grad


def layer_candidates(model: nn.Module) -> list[str]:
    """The modules Grad-CAM may default to: the stages in ``feature_info`` (cnnzoo models), else
    every convolution (any other module), in forward order."""
    info = getattr(model, "feature_info", None)
    if info:
        return [f.module for f in info]
    return [n for n, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)]


def _output_shapes(model: nn.Module, x: Tensor, names: list[str]) -> dict[str, tuple[int, ...]]:
    modules = dict(model.named_modules())
    shapes: dict[str, tuple[int, ...]] = {}

    def keep(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(_module: nn.Module, _args: Any, output: Any) -> None:
            if isinstance(output, Tensor):
                shapes.setdefault(name, tuple(output.shape))

        return hook

    handles = [modules[name].register_forward_hook(keep(name)) for name in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def default_layer(model: nn.Module, image: Tensor) -> str:
    """The Grad-CAM layer for this model at this input: the last stage of ``feature_info`` whose
    output is still a spatial map (more than 1x1). Grad-CAM's paper (Selvaraju et al. 2017,
    sec. 3) takes the last convolutional maps: the most semantic ones that keep a layout."""
    x = _batch(image)
    names = layer_candidates(model)
    if not names:
        raise ValueError(f"{type(model).__name__} has no feature_info and no convolution layers")
    with preserved(model):
        shapes = _output_shapes(model, x, names)
    maps = [n for n in names if len(shapes.get(n, ())) == 4]
    if not maps:
        raise ValueError(f"none of {', '.join(names)} produced a feature map (N, C, H, W)")
    spatial = [n for n in maps if shapes[n][2] * shapes[n][3] > 1]
    return (spatial or maps)[-1]


def _batch(image: Tensor) -> Tensor:
    if image.dim() == 3:
        return image.unsqueeze(0)
    if image.dim() == 4:
        return image
    raise ValueError(
        f"expected an image (C, H, W) or a batch (N, C, H, W), got {tuple(image.shape)}"
    )


def _leaf(x: Tensor) -> Tensor:
    """A copy of the input that gradients flow to (the caller's tensor is never touched)."""
    return x.detach().clone().requires_grad_(True)


def _targets(model: nn.Module, x: Tensor, target: int | None) -> int | list[int]:
    """Captum's target: the given class for every image, else each image's prediction."""
    classes = getattr(model, "num_classes", None)
    if target is None or not isinstance(classes, int):  # a forward pass tells
        with torch.no_grad():
            logits = model(x)
        classes = int(logits.shape[1])
        if target is None:
            return [int(k) for k in logits.argmax(dim=1).tolist()]
    if not 0 <= target < classes:
        raise ValueError(f"target class {target} is out of range: the model has {classes} outputs")
    return target


def explain(
    model: nn.Module,
    image: Tensor,
    method: str = "gradcam",
    *,
    target: int | None = None,
    layer: str | None = None,
    window: int | None = None,
    stride: int | None = None,
) -> Tensor:
    """The attribution map of ``model``'s score for class ``target`` (default: its prediction) on
    ``image`` ((C, H, W) -> (H, W); (N, C, H, W) -> (N, H, W)), at the input's resolution.

    - ``gradcam`` (Selvaraju et al. 2017, arXiv:1610.02391): at ``layer`` (default:
      :func:`default_layer`), channel weights = spatially averaged gradients of the class logit,
      ReLU of the weighted sum of the maps, upsampled bilinearly.
    - ``saliency`` (Simonyan et al. 2013, arXiv:1312.6034): |d logit / d pixel|, max over channels.
    - ``occlusion`` (Zeiler & Fergus 2013, arXiv:1311.2901): how much the class *probability*
      drops when a ``window`` square (default: an eighth of the side) slid by ``stride`` (default:
      half the window) is replaced by 0, the dataset mean after normalisation; mean over channels.

    The model is evaluated in eval mode; its modes, gradients and hooks are left as they were.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: expected one of {', '.join(METHODS)}")
    captum_attr = _captum_attr()
    single = image.dim() == 3
    x = _batch(image).detach()
    modules = dict(model.named_modules())
    if layer is not None and (layer not in modules or layer == ""):
        raise ValueError(
            f"no layer named {layer!r}; feature stages: {', '.join(layer_candidates(model))}"
        )
    if method == "gradcam" and layer is None:
        layer = default_layer(model, x)
    # Gradients are needed even when the caller is under no_grad() or inference_mode().
    with preserved(model), torch.inference_mode(False), torch.enable_grad():
        targets = _targets(model, x, target)
        if method == "gradcam":
            assert layer is not None
            cam = captum_attr.LayerGradCam(model, modules[layer])
            coarse = cam.attribute(_leaf(x), target=targets, relu_attributions=True)
            if coarse.dim() != 4:
                raise ValueError(
                    f"layer {layer!r} gives no spatial map: output {tuple(coarse.shape)}"
                )
            heat = captum_attr.LayerAttribution.interpolate(
                coarse, tuple(x.shape[-2:]), interpolate_mode="bilinear"
            )[:, 0]
        elif method == "saliency":
            grads = captum_attr.Saliency(model).attribute(_leaf(x), target=targets, abs=True)
            heat = grads.amax(dim=1)
        else:
            side = min(int(x.shape[-2]), int(x.shape[-1]))
            window = window or max(1, side // 8)
            stride = stride or max(1, window // 2)
            if not 1 <= window <= side or stride < 1:
                raise ValueError(
                    f"occlusion needs 1 <= window <= {side} (the image side) and stride >= 1, "
                    f"got window {window}, stride {stride}"
                )

            def probabilities(batch: Tensor) -> Tensor:
                return torch.softmax(model(batch), dim=1)

            drops = captum_attr.Occlusion(probabilities).attribute(
                x.clone(),
                sliding_window_shapes=(int(x.shape[1]), window, window),
                strides=(int(x.shape[1]), stride, stride),
                baselines=0.0,
                target=targets,
                perturbations_per_eval=16,
            )
            heat = drops.mean(dim=1)
    result: Tensor = heat.detach().float()
    return result[0] if single else result
