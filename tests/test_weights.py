from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from cnnzoo import WeightsMismatchError, create_model, load_weights
from cnnzoo.models.base import ClassifierModel, FeatureInfo


class Tiny(ClassifierModel):
    def __init__(self, num_classes: int = 4, in_channels: int = 3) -> None:
        super().__init__()
        self.num_classes, self.in_channels = num_classes, in_channels
        self.min_input_size = (3, 3)
        self.feature_info = [FeatureInfo("features", 8, 1)]
        self.features = nn.Sequential(nn.Conv2d(in_channels, 8, 3), nn.ReLU())
        self.fc = nn.Linear(8, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # type: ignore[no-any-return]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = x.mean((2, 3))
        return x if pre_logits else self.fc(x)  # type: ignore[no-any-return]

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes, self.fc = num_classes, nn.Linear(8, num_classes)


def _save(obj: Any, path: Path) -> Path:
    torch.save(obj, path)
    return path


def test_round_trip_and_checkpoint_layouts(tmp_path: Path) -> None:
    source = Tiny()
    state = source.state_dict()
    layouts = {
        "bare": state,
        "ours": {"model": state, "epoch": 3, "config": {"lr": 0.1}},
        "state_dict": {"state_dict": state},
        "ddp": {"module." + k: v for k, v in state.items()},
        "compiled_ddp": {"module._orig_mod." + k: v for k, v in state.items()},
    }
    x = torch.randn(2, 3, 5, 5)
    for label, obj in layouts.items():
        target = Tiny()
        report = load_weights(target, _save(obj, tmp_path / f"{label}.pt"))
        assert report == ([], [], [], []), label
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def test_mismatch_lists_missing_unexpected_and_misshaped(tmp_path: Path) -> None:
    state = Tiny(num_classes=10).state_dict()
    del state["features.0.bias"]
    state["extra.weight"] = torch.zeros(1)
    path = _save(state, tmp_path / "bad.pt")
    with pytest.raises(WeightsMismatchError) as caught:
        load_weights(Tiny(), path)
    message = str(caught.value)
    assert "missing (1): features.0.bias" in message
    assert "unexpected (1): extra.weight" in message
    assert "mis-shaped (2): fc.weight: checkpoint (10, 8) vs model (4, 8)" in message
    assert "drop_head=True" in message


def test_non_strict_loads_what_fits(tmp_path: Path) -> None:
    source = Tiny(num_classes=10)
    target = Tiny()
    report = load_weights(target, _save(source.state_dict(), tmp_path / "w.pt"), strict=False)
    assert report.mismatched == [
        "fc.weight: checkpoint (10, 8) vs model (4, 8)",
        "fc.bias: checkpoint (10,) vs model (4,)",
    ]
    assert torch.equal(target.features[0].weight, source.features[0].weight)


def test_drop_head_keeps_new_classifier(tmp_path: Path) -> None:
    source = Tiny(num_classes=10)
    target = Tiny(num_classes=4)
    head_before = target.fc.weight.clone()
    report = load_weights(target, _save(source.state_dict(), tmp_path / "w.pt"), drop_head=True)
    assert report.skipped_head == ["fc.weight", "fc.bias"]
    assert torch.equal(target.features[0].weight, source.features[0].weight)
    assert torch.equal(target.fc.weight, head_before)


def test_hostile_checkpoint_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "hostile.pt"
    torch.save({"model": Payload()}, path)
    with pytest.raises(ValueError, match=r"not a weights file: refused the global posix\.system"):
        load_weights(Tiny(), path)
    assert not marker.exists()


def test_weights_files_are_read_within_their_size_and_junk_is_one_line(tmp_path: Path) -> None:
    # the bounded reader of every checkpoint (#13) also reads weights: an archive whose entries
    # declare more than the file holds is refused before torch.load inflates it
    import zipfile

    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", bytes(50_000_000))
    with pytest.raises(ValueError, match=r"zip entries declare 50000000 bytes in a \d+-byte file"):
        load_weights(Tiny(), bomb)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError) as caught:
        load_weights(Tiny(), junk)
    assert "not a weights file" in str(caught.value) and "\n" not in str(caught.value)


def test_not_a_state_dict_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds no state_dict"):
        load_weights(Tiny(), _save([1, 2, 3], tmp_path / "list.pt"))
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load_weights(Tiny(), tmp_path / "absent.pt")


@pytest.mark.parametrize("name", ["resnet18", "googlenet"])
def test_torchvision_layout_checkpoint_loads_strict(
    name: str, tmp_path: Path, torchvision_state_dicts: dict[str, Any]
) -> None:
    # A file laid out exactly like torchvision's checkpoint (keys, order and shapes from
    # torchvision 0.28), filled with random values, must load with strict=True.
    generator = torch.Generator().manual_seed(1)
    state = {
        key: torch.randn(shape, generator=generator) if shape else torch.tensor(7)
        for key, shape in torchvision_state_dicts[name]["state_dict"]
    }
    model = create_model(name)
    load_weights(model, _save(state, tmp_path / f"{name}.pth"))
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key].to(value.dtype)), key


def test_googlenet_drop_head_skips_aux_classifiers(
    tmp_path: Path, torchvision_state_dicts: dict[str, Any]
) -> None:
    state = {k: torch.zeros(s) for k, s in torchvision_state_dicts["googlenet"]["state_dict"]}
    model = create_model("googlenet", num_classes=5)
    report = load_weights(model, _save(state, tmp_path / "g.pth"), drop_head=True)
    assert sorted(report.skipped_head) == sorted(
        ["fc.weight", "fc.bias", *(f"aux{i}.fc2.{p}" for i in (1, 2) for p in ("weight", "bias"))]
    )
