"""Checkpoint contents held to limits and the registry before any model is built (issue #13),
and a hypothesis fuzz of the checkpoint reader: a clean one-line error or a valid result."""

from __future__ import annotations

import copy
import io
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnzoo import create_model
from cnnzoo.train.checkpoint import load_checkpoint
from cnnzoo.train.checkpoint_validation import CheckpointError, validate_checkpoint
from cnnzoo.train.predict import model_from_checkpoint
from hostile_files import evil_checkpoint, save, valid_checkpoint, zip_bomb_checkpoint

MB = 1 << 20


def _refused(path: Path, *fragments: str) -> str:
    with pytest.raises(ValueError) as info:
        model_from_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def _with(path: Path, change: Any) -> Path:
    checkpoint = valid_checkpoint()
    change(checkpoint)
    return save(checkpoint, path)


def test_a_valid_checkpoint_loads_and_predicts_like_the_model(tmp_path: Path) -> None:
    checkpoint = valid_checkpoint()
    path = save(checkpoint, tmp_path / "ok.pt")
    model, loaded = model_from_checkpoint(path)
    x = torch.randn(2, 1, 32, 32)
    # the same weights in a fresh model give the same logits
    reference = create_model("lenet5_modern", num_classes=10, in_channels=1).eval()
    reference.load_state_dict(checkpoint["model"])
    assert torch.equal(model(x), reference(x))
    assert loaded["data"]["classes"] == [str(c) for c in range(10)]


def test_absurd_num_classes_is_refused_before_any_model_is_built(tmp_path: Path) -> None:
    # the issue: num_classes = 10**12 in last.pt made eval/predict run for minutes using GBs
    path = _with(
        tmp_path / "last.pt", lambda c: c["config"]["model_kwargs"].update(num_classes=10**12)
    )
    tracemalloc.start()
    _refused(path, "model_kwargs.num_classes = 1000000000000", "at most 100000")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 16 * MB


def test_a_plausible_num_classes_must_still_match_the_weights(tmp_path: Path) -> None:
    def change(c: dict[str, Any]) -> None:
        c["config"]["model_kwargs"]["num_classes"] = 90_000
        c["data"]["classes"] = [str(k) for k in range(90_000)]

    # checked on the meta device: a real 90000-way head would be built and then thrown away
    _refused(_with(tmp_path / "a.pt", change), "output.weight has shape (10, 84)", "(90000, 84)")


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (lambda c: c["config"].update(model="no_such_net"), ["unknown model 'no_such_net'"]),
        (lambda c: c["config"].update(model=7), ["'config' must be a dict naming the model"]),
        (lambda c: c["config"].update(model_kwargs=[1, 2]), ["model_kwargs must be a dict"]),
        (
            lambda c: c["config"]["model_kwargs"].update(in_channels=-3),
            ["model_kwargs.in_channels = -3", "1..4096"],
        ),
        (
            lambda c: c["config"]["model_kwargs"].update(bogus=1),
            ["do not build lenet5_modern", "bogus"],
        ),
        (
            lambda c: c["config"]["model_kwargs"].update(x=list(range(1000))),
            ["model_kwargs.x has over 64 items"],
        ),
        (lambda c: c["config"].update(lr=float("nan")), ["config.lr = nan"]),
        (lambda c: c["model"].pop("c1.weight"), ["missing ['c1.weight']"]),
        (lambda c: c["model"].update(extra=torch.zeros(1)), ["unexpected ['extra']"]),
        (lambda c: c["model"].update({"c1.bias": "six"}), ["'c1.bias' is not a named tensor"]),
        (
            lambda c: c["model"].update({"f6.weight": torch.zeros(1).expand(10**6, 120)}),
            ["f6.weight has shape (1000000, 120) but its storage holds only 4 bytes"],
        ),
        (lambda c: c.pop("data"), ["expected a dict with 'model', 'config' and 'data'"]),
        (
            lambda c: c.update(optimizer={"state": {0: {"exp_avg": torch.zeros(1).expand(10**7)}}}),
            [".optimizer.state.0.exp_avg has shape (10000000,) but its storage holds only 4"],
        ),
        (lambda c: c["data"].update(classes=["a"]), ["1 class names but", "num_classes = 10"]),
        (
            lambda c: c["data"].update(image_size=[1, 10**5, 10**5]),
            ["data.image_size 100000x100000 is over the limit"],
        ),
        (
            lambda c: c["config"].update(input_size=[10**5, 10**5]),
            ["config.input_size 100000x100000 is over the limit"],
        ),
        (lambda c: c["config"].update(input_size="big"), ["config.input_size must be"]),
        (lambda c: c["data"].update(mean=[0.1, 0.2]), ["data.mean must be 1 finite numbers"]),
        (lambda c: c["data"].update(std=[0.0]), ["data.std must be positive"]),
        (
            lambda c: c.update(ema={"module.c1.weight": torch.zeros(2)}),
            ["ema: the weights do not match"],
        ),
    ],
)
def test_each_hostile_content_is_one_clear_line(
    tmp_path: Path, change: Any, fragments: list[str]
) -> None:
    _refused(_with(tmp_path / "c.pt", change), *fragments)


def test_junk_named_pt_is_one_line_not_an_internal_error(tmp_path: Path) -> None:
    # the issue: "internal error: KeyError"
    for k, junk in enumerate((b"hello world" * 10, b"", b"PK\x03\x04garbage", b"\x80\x02}q\x00.")):
        path = tmp_path / f"junk{k}.pt"
        path.write_bytes(junk)
        message = _refused(path, "not a cnnzoo checkpoint")
        assert "weights_only=False" not in message


def test_hostile_global_is_named_without_torchs_advice(tmp_path: Path) -> None:
    message = _refused(evil_checkpoint(tmp_path / "evil.pt"), "refused", "system")
    assert "nothing in it was run" in message
    assert "weights_only" not in message and "trusted source" not in message


def test_zip_entries_may_not_declare_more_than_the_file_holds(tmp_path: Path) -> None:
    path = zip_bomb_checkpoint(tmp_path / "bomb.pt")
    assert path.stat().st_size < 4 * MB
    _refused(path, "declare", "expected uncompressed entries")


def test_a_bare_state_dict_points_to_load_weights(tmp_path: Path) -> None:
    path = save(valid_checkpoint()["model"], tmp_path / "weights.pt")
    _refused(path, "cnnzoo.load_weights")


def test_a_run_folder_resolves_to_last_pt(tmp_path: Path) -> None:
    save(valid_checkpoint(), tmp_path / "last.pt")
    assert load_checkpoint(tmp_path)["config"]["model"] == "lenet5_modern"


# --- fuzz -------------------------------------------------------------------------------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.binary(max_size=8),
)
_VALUES = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=4),
    st.dictionaries(st.text(max_size=4), _SCALARS, max_size=3),
    st.builds(torch.zeros, st.integers(0, 4)),
)
_PATHS = [
    ("config", "model"),
    ("config", "model_kwargs"),
    ("config", "model_kwargs", "num_classes"),
    ("config", "model_kwargs", "in_channels"),
    ("config", "lr"),
    ("data",),
    ("data", "classes"),
    ("data", "image_size"),
    ("data", "mean"),
    ("data", "std"),
    ("model",),
    ("model", "c1.weight"),
    ("model", "output.bias"),
    ("ema",),
    ("config",),
]
_BASE = valid_checkpoint()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_PATHS), _VALUES), min_size=1, max_size=3))
def test_fuzzed_contents_give_a_valid_checkpoint_or_one_clean_line(
    changes: list[tuple[tuple[str, ...], Any]],
) -> None:
    checkpoint = copy.deepcopy(_BASE)
    for path, value in changes:
        target: Any = checkpoint
        for key in path[:-1]:
            if not isinstance(target, dict):
                break
            target = target.setdefault(key, {})
        if isinstance(target, dict):
            target[path[-1]] = value
    try:
        validate_checkpoint(checkpoint, "fuzz.pt")
    except CheckpointError as error:
        message = str(error)
        assert message.startswith("fuzz.pt") and "\n" not in message
        return
    # accepted: then the model really builds and takes the weights
    kwargs = checkpoint["config"].get("model_kwargs") or {}
    create_model(checkpoint["config"]["model"], **kwargs).load_state_dict(checkpoint["model"])


def _saved(checkpoint: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


_BASE_BYTES = _saved(_BASE)


@settings(max_examples=60, deadline=None)
@given(noise=st.binary(min_size=1, max_size=2048), offset=st.integers(0, len(_BASE_BYTES)))
def test_fuzzed_bytes_of_a_real_checkpoint_never_escape_as_other_errors(
    noise: bytes, offset: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    data = bytearray(_BASE_BYTES)
    data[offset : offset + len(noise)] = noise
    path = tmp_path_factory.getbasetemp() / "mutated.pt"
    path.write_bytes(bytes(data))
    try:
        load_checkpoint(path)
    except ValueError as error:
        assert "\n" not in str(error) and str(path) in str(error)
