"""Grad-CAM, saliency and occlusion: a reference computed here, a model whose decision lives in
one region, every registered model's default layer, and the model left as it was."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import Tensor, nn

from cnnzoo import create_model, list_models, model_info
from cnnzoo.explain import METHODS, default_layer, explain
from cnnzoo.inspect.collect import build_meta

pytest.importorskip("captum", reason="pip install 'cnnzoo[explain]'")


def reference_gradcam(model: nn.Module, x: Tensor, layer: str, target: int) -> Tensor:
    """Grad-CAM as Selvaraju et al. 2017 (eq. 1-2) define it, written out with plain hooks."""
    captured: list[Tensor] = []
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        logits = model.eval()(x.unsqueeze(0))
    finally:
        handle.remove()
    maps = captured[0]
    (grads,) = torch.autograd.grad(logits[0, target], maps)
    weights = grads.mean(dim=(2, 3), keepdim=True)  # alpha_k: spatially averaged gradients
    cam = torch.relu((weights * maps).sum(dim=1, keepdim=True))
    up = nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return up[0, 0].detach()


@pytest.mark.parametrize(
    ("name", "size", "layer"),
    [
        ("resnet20", (3, 32, 32), None),
        ("resnet20", (3, 32, 32), "layer2"),
        ("simple_cnn", (3, 32, 32), None),
        ("lenet5", (1, 32, 32), None),
        ("googlenet", (3, 64, 64), None),
    ],
)
def test_gradcam_matches_a_reference_computed_with_hooks(
    name: str, size: tuple[int, int, int], layer: str | None
) -> None:
    model = create_model(name).eval()
    x = torch.randn(*size)
    chosen = layer or default_layer(model, x)
    # The first class with a non-zero map: an all-zero one would compare equal to anything.
    target, expected = next(
        (k, ref)
        for k in range(10)
        if (ref := reference_gradcam(model, x, chosen, k)).abs().max() > 0
    )
    ours = explain(model, x, "gradcam", target=target, layer=layer)
    assert ours.shape == size[1:]
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-6)


def _pattern_detector() -> nn.Module:
    """A network that answers "is there a plus sign?" from one matched filter: its logit sums
    the filter's thresholded response, so only where the sign is can change the decision."""
    plus = torch.zeros(5, 5)
    plus[2, :] = 1
    plus[:, 2] = 1
    conv = nn.Conv2d(1, 1, 5, padding=2)
    with torch.no_grad():
        conv.weight.copy_((plus - plus.mean()).view(1, 1, 5, 5))
        conv.bias.fill_(-3.0)  # noise alone never reaches the threshold
    head = nn.Linear(1, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        head.bias.zero_()
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("corner", [(4, 4), (20, 22)])
def test_the_map_peaks_where_the_decision_is_made(method: str, corner: tuple[int, int]) -> None:
    model = _pattern_detector()
    x = 0.1 * torch.randn(1, 32, 32)
    top, left = corner
    x[0, top + 2, left : left + 5] = 1.0
    x[0, top : top + 5, left + 2] = 1.0
    assert model(x.unsqueeze(0)).argmax() == 1
    heat = explain(model, x, method, target=1, layer="1" if method == "gradcam" else None)
    region = torch.zeros(32, 32, dtype=torch.bool)
    region[max(0, top - 2) : top + 7, max(0, left - 2) : left + 7] = True
    peak = divmod(int(heat.argmax()), 32)
    assert region[peak], f"{method} peaks at {peak}, the sign is at {corner}"
    assert heat[region].mean() > 5 * heat[~region].clamp_min(0).mean()


def test_default_layer_is_the_last_spatial_stage() -> None:
    lenet = create_model("lenet5")
    # C5's output is 120 maps of 1x1 at 32x32: the last stage with a layout is S4 (5x5).
    assert [f.module for f in lenet.feature_info][-1] == "c5_act"
    assert default_layer(lenet, torch.randn(1, 32, 32)) == "s4_act"
    resnet = create_model("resnet18")
    assert default_layer(resnet, torch.randn(3, 64, 64)) == "layer4"  # 2x2
    assert default_layer(resnet, torch.randn(3, 32, 32)) == "layer3"  # layer4 is 1x1 there


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_every_model_has_a_default_layer_and_a_gradcam(name: str) -> None:
    # The big ones (VGG's weights alone are 0.5 GB) run on the meta device: hooks, shapes and
    # the layer choice are exercised at no memory cost. Meta is slow per operation, so the deep
    # small ones (ResNet-1202) run for real.
    big = model_info(name).params > 30_000_000
    model = (build_meta(name) if big else create_model(name)).eval()
    h, w = model.fixed_input_size or tuple(max(32, s) for s in model.min_input_size)
    x = torch.randn(model.in_channels, h, w, device="meta" if big else "cpu")
    stages = [f.module for f in model.feature_info]
    with torch.no_grad():
        shapes = {n: t.shape for n, t in _stage_outputs(model, x, stages).items()}
    spatial = [n for n in stages if len(shapes[n]) == 4 and shapes[n][2] * shapes[n][3] > 1]
    layer = default_layer(model, x)
    assert layer == spatial[-1], shapes  # the last stage that still has a layout
    heat = explain(model, x, "gradcam", target=0, layer=layer)
    assert heat.shape == (h, w)
    assert _hook_count(model) == 0


def _stage_outputs(model: nn.Module, x: Tensor, names: list[str]) -> dict[str, Tensor]:
    modules = dict(model.named_modules())
    outputs: dict[str, Tensor] = {}
    handles = [
        modules[n].register_forward_hook(lambda _m, _i, o, n=n: outputs.setdefault(n, o))
        for n in names
    ]
    try:
        model(x.unsqueeze(0))
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def _hook_count(model: nn.Module) -> int:
    tables = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(m, t)) for m in model.modules() for t in tables)


def _state(model: nn.Module) -> tuple[list[bool], list[bool], list[Tensor | None]]:
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [p.grad for p in model.parameters()],
    )


@pytest.mark.parametrize("method", METHODS)
def test_model_mode_gradients_and_hooks_are_left_as_they_were(method: str) -> None:
    model = create_model("resnet20").train()
    model.layer1.eval()  # a mixed state must come back exactly
    for p in model.layer1.parameters():
        p.requires_grad_(False)
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    keep = model.layer3.register_forward_hook(lambda *_: None)  # the user's own hook stays
    before = _state(model)
    hooks = _hook_count(model)
    x = torch.randn(3, 32, 32)
    with torch.no_grad():  # the caller's grad mode does not matter, and is restored
        explain(model, x, method, window=8)
    with torch.inference_mode():
        explain(model, x, method, window=8)
    after = _state(model)
    assert after[0] == before[0] and after[1] == before[1]
    assert all(a is b for a, b in zip(after[2], before[2], strict=True))
    assert _hook_count(model) == hooks
    assert torch.is_grad_enabled()
    keep.remove()


class _FailsUnderAttribution(nn.Module):
    """Classifies once, then fails inside the attribution's own forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.model = create_model("resnet20")
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("boom")
        return self.model(x)


@pytest.mark.parametrize("method", METHODS)
def test_hooks_are_removed_when_the_attribution_fails(method: str) -> None:
    model = _FailsUnderAttribution().train()
    before = _state(model)
    layer = "model.layer3" if method == "gradcam" else None
    with pytest.raises(RuntimeError, match="boom"):
        explain(model, torch.randn(3, 32, 32), method, layer=layer, window=16)
    assert _hook_count(model) == 0
    after = _state(model)
    assert after[0] == before[0] and after[1] == before[1]
    assert all(p.grad is None for p in model.parameters())


def test_bad_arguments_fail_in_one_clear_line() -> None:
    model = create_model("resnet20")
    x = torch.randn(3, 32, 32)
    with pytest.raises(ValueError, match=r"unknown method 'lime'.*gradcam, saliency, occlusion"):
        explain(model, x, "lime")
    with pytest.raises(ValueError, match=r"no layer named 'layer9'; feature stages: .*layer3"):
        explain(model, x, "gradcam", layer="layer9")
    with pytest.raises(ValueError, match="target class 10 is out of range: the model has 10"):
        explain(model, x, "saliency", target=10)
    with pytest.raises(ValueError, match="occlusion needs 1 <= window <= 32"):
        explain(model, x, "occlusion", window=40)
    with pytest.raises(ValueError, match="got window 4, stride -1"):
        explain(model, x, "occlusion", window=4, stride=-1)
    with pytest.raises(ValueError, match=r"expected an image \(C, H, W\)"):
        explain(model, torch.randn(32, 32), "saliency")
    assert _hook_count(model) == 0


def test_batches_give_one_map_per_image() -> None:
    model = create_model("resnet20")
    x = torch.randn(2, 3, 32, 32)
    batch = explain(model, x, "gradcam")
    assert batch.shape == (2, 32, 32)
    torch.testing.assert_close(batch[1], explain(model, x[1], "gradcam"), rtol=1e-4, atol=1e-6)


def test_missing_captum_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'cnnzoo\[explain\]'"):
        explain(create_model("resnet20"), torch.randn(3, 32, 32), "saliency")
