"""Pretrained weights (cnnzoo.pretrained): the shipped table, fetching, the transform, predict,
fine-tuning. Nothing touches the internet: generated state_dicts, named with their own SHA-256
prefix as torchvision names its files, are served from a local HTTP server on 127.0.0.1, and
TORCH_HOME points into the test's tmp dir."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnzoo
from cnnzoo import pretrained
from cnnzoo.cli import main
from cnnzoo.pretrained import (
    ImageTransform,
    WeightsDownloadError,
    WeightsEntry,
    WeightsHashError,
    get_weights,
    list_weights,
)

REFERENCE = Path(__file__).parent / "data" / "torchvision_weights.json"


# --------------------------------------------------------------------------- fixtures


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server:
    def __init__(self, root: Path) -> None:
        _Handler.requests = self.requests = []
        handler = functools.partial(_Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"  # nothing listens there any more


def _hashed_file(model: str, state: dict[str, torch.Tensor], folder: Path) -> Path:
    """Save ``state`` as torchvision names its files: ``<model>-<first 8 hex of SHA-256>.pth``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    path = folder / f"{model}-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated ImageNet-shaped resnet18 state_dict (seed 0), saved under its hash name."""
    torch.manual_seed(0)
    state = cnnzoo.create_model("resnet18").state_dict()
    return _hashed_file("resnet18", state, tmp_path_factory.mktemp("files"))


def _entry(model: str, name: str, url: str, *, categories: bool = True) -> WeightsEntry:
    """A table entry for a generated file: small evaluation size to keep tests fast."""
    return WeightsEntry(
        model=model,
        name=name,
        url=url,
        default=True,
        transform=ImageTransform(resize_size=40, crop_size=32),
        categories=pretrained.imagenet_categories() if categories else None,
        acc1=None,
        acc5=None,
        gflops=None,
        file_size_mb=None,
        num_params=None,
        min_size=(1, 1),
        recipe="",
    )


@pytest.fixture(autouse=True)
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(pretrained.WEIGHTS_URL_ENV, raising=False)
    return tmp_path / "torch"


def _use_entries(monkeypatch: pytest.MonkeyPatch, *entries: WeightsEntry) -> None:
    """The shipped table with these entries replacing their models' own."""
    table = {model: dict(e) for model, e in pretrained._entries().items()}
    for entry in entries:
        table[entry.model] = {}
    for entry in entries:
        table[entry.model][entry.name] = entry
    monkeypatch.setattr(pretrained, "_entries", lambda: table)


@pytest.fixture
def served(tmp_path: Path, resnet18_file: Path) -> Iterator[tuple[Server, Path]]:
    www = tmp_path / "www"
    (www / "mirror").mkdir(parents=True)
    (www / resnet18_file.name).write_bytes(resnet18_file.read_bytes())
    (www / "mirror" / resnet18_file.name).write_bytes(resnet18_file.read_bytes())
    with Server(www) as server:
        yield server, www


def _cache_dir(torch_home: Path) -> Path:
    return torch_home / "hub" / "checkpoints"


def _images(
    folder: Path, count: int, size: tuple[int, int] = (48, 64), seed: int = 0
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = []
    for k in range(count):
        array = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        path = folder / f"{k:03d}.png"
        Image.fromarray(array).save(path)
        files.append(path)
    return files


# --------------------------------------------------------------------------- the table


def test_shipped_table_matches_the_reference() -> None:
    """Every entry of torchvision 0.28's table (tests/data copy of shared/reference) is shipped
    and read back with its URL, DEFAULT flag, transform, metrics and the class names."""
    reference = json.loads(REFERENCE.read_text("utf-8"))
    categories = tuple(reference["imagenet1k_categories"])
    assert len(categories) == 1000
    assert pretrained.imagenet_categories() == categories
    entries = [(m, n, raw) for m, names in reference["models"].items() for n, raw in names.items()]
    assert len(entries) == 36 and len(reference["models"]) == 27  # the counts
    assert len(list_weights()) == 36
    for model, name, raw in entries:
        entry = get_weights(model, name)
        t, meta = raw["transforms"], raw["meta"]
        assert entry.url == raw["url"] and entry.default == raw["default"]
        assert entry.transform == ImageTransform(
            resize_size=t["resize_size"][0],
            crop_size=t["crop_size"][0],
            interpolation=t["interpolation"],
            antialias=t["antialias"],
            mean=tuple(t["mean"]),
            std=tuple(t["std"]),
        )
        metrics = meta.get("_metrics", {}).get("ImageNet-1K", {})
        assert (entry.acc1, entry.acc5) == (metrics.get("acc@1"), metrics.get("acc@5"))
        assert entry.file_size_mb == meta["_file_size"] and entry.gflops == meta["_ops"]
        assert entry.num_params == meta["num_params"]
        assert entry.categories == (categories if raw["categories"] == "IMAGENET1K" else None)
        assert re.fullmatch(r"[0-9a-f]{8}", entry.hash_prefix)
        assert raw["url"].endswith(f"-{entry.hash_prefix}.pth")
    for model, names in reference["models"].items():
        defaults = [n for n, raw in names.items() if raw["default"]]
        assert get_weights(model).name == defaults[0] and len(defaults) == 1


def test_every_torchvision_compatible_model_has_weights_that_fit_it() -> None:
    """A registered model with torchvision's state_dict has an entry, and the weights' parameter
    count (torchvision's metadata) is the model's as built with them (googlenet drops its aux
    heads, as torchvision does: 6,624,904)."""
    for name in cnnzoo.list_models():
        info = cnnzoo.model_info(name)
        if not info.torchvision:
            continue
        aux = pretrained._AUX_DEFAULT
        kwargs = {"aux_logits": aux[name]} if name in aux else {}
        with torch.device("meta"):
            params = sum(p.numel() for p in cnnzoo.create_model(name, **kwargs).parameters())
        for entry in list_weights(name):
            assert entry.model == name
            assert entry.num_params == params, entry.qualified_name
        assert list_weights(name), f"{name} is torchvision-compatible but has no weights entry"


@pytest.mark.parametrize(
    ("model", "weights", "expected"),
    [
        ("alexnet_original", "DEFAULT", "alexnet_original has no pretrained weights (alexnet has)"),
        ("resnet20", "DEFAULT", "resnet20 has no pretrained weights"),
        ("resnet50", "IMAGENET1K_V9", "resnet50 has no weights 'IMAGENET1K_V9': it has "),
        ("resnet50", "nowhere/resnet50.pth", "no weights file at nowhere/resnet50.pth"),
    ],
)
def test_missing_weights_are_one_clear_line(
    model: str, weights: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises((ValueError, FileNotFoundError), match=re.escape(expected)):
        cnnzoo.create_model(model, weights=weights)
    for command in ("show", "draw", "bench", "export", "predict", "train"):
        argv = [command, model, "--weights", weights]
        argv += {"export": ["-o", "x.onnx"], "predict": ["x.png"]}.get(command, [])
        assert main(argv) == 2, command
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, (command, err)


def test_an_entry_whose_model_is_not_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    _use_entries(monkeypatch, _entry("notanet", "IMAGENET1K_V1", "http://127.0.0.1:9/x-0.pth"))
    with pytest.raises(ValueError, match="no model of that name is registered"):
        cnnzoo.create_model("notanet", weights="DEFAULT")


def test_entry_names_resolve_like_torchvision() -> None:
    assert get_weights("resnet50", "DEFAULT").name == "IMAGENET1K_V2"
    assert get_weights("resnet50", "imagenet1k_v1").name == "IMAGENET1K_V1"
    assert get_weights("resnet50", "ResNet50_Weights.IMAGENET1K_V1").name == "IMAGENET1K_V1"


# --------------------------------------------------------------------------- fetching


def test_download_into_torch_hub_cache_then_cache_hit(
    served: tuple[Server, Path],
    resnet18_file: Path,
    torch_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, _ = served
    _use_entries(monkeypatch, _entry("resnet18", "TEST_V1", server.url + resnet18_file.name))
    model = cnnzoo.create_model("resnet18", weights="DEFAULT", progress=False)
    cached = _cache_dir(torch_home) / resnet18_file.name
    assert cached.read_bytes() == resnet18_file.read_bytes()
    assert server.requests == ["/" + resnet18_file.name]
    expected = torch.load(resnet18_file, weights_only=True)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0)
    assert model.pretrained_weights.name == "TEST_V1"
    again = cnnzoo.create_model("resnet18", weights="TEST_V1", progress=False)
    assert server.requests == ["/" + resnet18_file.name]  # the cache answered
    torch.testing.assert_close(again.fc.weight, expected["fc.weight"], rtol=0, atol=0)
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]  # no partial files left


def test_a_file_torchvision_already_cached_is_used_without_a_download(
    resnet18_file: Path, torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real table entry: its file name under $TORCH_HOME/hub/checkpoints is all that counts.
    entry = get_weights("resnet18")
    assert entry.url == "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    _cache_dir(torch_home).mkdir(parents=True)
    (_cache_dir(torch_home) / entry.file_name).write_bytes(resnet18_file.read_bytes())
    monkeypatch.setenv(pretrained.WEIGHTS_URL_ENV, _closed_port_url())  # any download would fail
    assert main(["weights", "resnet18"]) == 0
    model = cnnzoo.create_model("resnet18", weights="DEFAULT")
    expected = torch.load(resnet18_file, weights_only=True)
    torch.testing.assert_close(model.conv1.weight, expected["conv1.weight"], rtol=0, atol=0)


def test_weights_command_lists_accuracy_size_and_cache(
    resnet18_file: Path, torch_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["weights", "resnet*"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith("resnet")]
    assert len(rows) == len(list_weights("resnet*")) == 8  # 18, 34: V1; 50, 101, 152: V1, V2
    row50 = next(r for r in rows if r[:3] == ["resnet50", "IMAGENET1K_V2", "*"])
    assert row50[3:7] == ["80.858", "95.434", "232/224", "97.8"]  # torchvision 0.28's metadata
    assert not any("yes" in r for r in rows)
    _cache_dir(torch_home).mkdir(parents=True)
    (_cache_dir(torch_home) / "resnet18-f37072fd.pth").write_bytes(b"x")
    main(["weights", "resnet18"])
    assert capsys.readouterr().out.splitlines()[2].split()[-1] == "yes"


def test_mirror_variable_replaces_the_base_url(
    served: tuple[Server, Path],
    resnet18_file: Path,
    torch_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, _ = served
    _use_entries(
        monkeypatch, _entry("resnet18", "TEST_V1", _closed_port_url() + resnet18_file.name)
    )
    monkeypatch.setenv(pretrained.WEIGHTS_URL_ENV, server.url + "mirror")
    cnnzoo.create_model("resnet18", weights="TEST_V1", progress=False)
    assert server.requests == ["/mirror/" + resnet18_file.name]
    assert (_cache_dir(torch_home) / resnet18_file.name).is_file()


def test_a_file_whose_hash_does_not_match_is_refused(
    served: tuple[Server, Path],
    resnet18_file: Path,
    torch_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, www = served
    tampered = bytearray(resnet18_file.read_bytes())
    tampered[-100] ^= 0xFF
    (www / resnet18_file.name).write_bytes(bytes(tampered))
    _use_entries(monkeypatch, _entry("resnet18", "TEST_V1", server.url + resnet18_file.name))
    with pytest.raises(WeightsHashError, match=f"does not start with {resnet18_file.name[9:17]}"):
        cnnzoo.create_model("resnet18", weights="TEST_V1", progress=False)
    assert list(_cache_dir(torch_home).iterdir()) == []  # neither the file nor a partial one


def test_offline_names_url_file_and_folder(
    resnet18_file: Path,
    torch_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = _closed_port_url() + resnet18_file.name
    _use_entries(monkeypatch, _entry("resnet18", "TEST_V1", url))
    with pytest.raises(WeightsDownloadError) as caught:
        cnnzoo.create_model("resnet18", weights="TEST_V1", progress=False)
    message = str(caught.value)
    assert url in message and resnet18_file.name in message
    assert str(_cache_dir(torch_home)) in message
    image = _images(torch_home.parent / "img", 1)[0]
    assert main(["predict", "resnet18", "--weights", "TEST_V1", str(image)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if "error" in line]) == 1 and url in err[-1]


# --------------------------------------------------------------------------- loading


def test_a_weights_file_path_and_a_new_head(resnet18_file: Path) -> None:
    expected = torch.load(resnet18_file, weights_only=True)
    whole = cnnzoo.create_model("resnet18", weights=str(resnet18_file))
    torch.testing.assert_close(whole.fc.weight, expected["fc.weight"], rtol=0, atol=0)
    for weights in (str(resnet18_file),):
        tuned = cnnzoo.create_model("resnet18", weights=weights, num_classes=7, in_channels=1)
        assert tuned.fc.out_features == 7 and tuned.conv1.in_channels == 1
        torch.testing.assert_close(
            tuned.layer4[1].conv2.weight, expected["layer4.1.conv2.weight"], rtol=0, atol=0
        )


def test_new_head_and_channels_on_an_entry(
    resnet18_file: Path, torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_entries(monkeypatch, _entry("resnet18", "TEST_V1", "http://127.0.0.1:9/x.pth"))
    _cache_dir(torch_home).mkdir(parents=True)
    (_cache_dir(torch_home) / "x.pth").write_bytes(resnet18_file.read_bytes())
    expected = torch.load(resnet18_file, weights_only=True)
    model = cnnzoo.create_model("resnet18", weights="TEST_V1", num_classes=3, in_channels=1)
    assert model.fc.out_features == 3 and model.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 3)
    # One gray channel sees what the RGB kernels saw of a gray image: their sum.
    torch.testing.assert_close(model.conv1.weight, expected["conv1.weight"].sum(1, keepdim=True))


@pytest.mark.parametrize(
    ("model", "aux_names"),
    [
        ("googlenet", ("aux1", "aux2")),
        pytest.param("inception_v3", ("AuxLogits",), marks=pytest.mark.slow),
    ],
)
def test_googlenet_and_inception_follow_torchvision_with_weights(
    model: str, aux_names: tuple[str, ...], torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torchvision builds these with the aux heads to load the file, then keeps them only for
    inception_v3 (aux_logits default True) and turns transform_input on: the weights were trained
    on inputs normalised another way."""
    torch.manual_seed(0)
    file = _hashed_file(model, cnnzoo.create_model(model).state_dict(), torch_home.parent)
    _use_entries(monkeypatch, _entry(model, "TEST_V1", "http://127.0.0.1:9/" + file.name))
    _cache_dir(torch_home).mkdir(parents=True)
    file.rename(_cache_dir(torch_home) / file.name)
    built = cnnzoo.create_model(model, weights="TEST_V1")
    assert built.transform_input is True
    keeps_aux = model == "inception_v3"
    assert built.aux_logits is keeps_aux
    assert all((getattr(built, n) is not None) is keeps_aux for n in aux_names)
    flipped = cnnzoo.create_model(
        model, weights="TEST_V1", aux_logits=not keeps_aux, transform_input=False
    )
    assert flipped.transform_input is False and flipped.aux_logits is (not keeps_aux)


def test_old_densenet_keys_are_renamed_as_torchvision_does(tmp_path: Path) -> None:
    from collections import OrderedDict

    from cnnzoo.models.densenet import DenseNet

    old = OrderedDict(
        [
            ("features.denseblock1.denselayer1.norm.1.weight", torch.ones(1)),
            ("features.denseblock1.denselayer1.conv.2.weight", torch.ones(1)),
            ("features.norm0.weight", torch.ones(1)),
        ]
    )
    old._metadata = {"": {"version": 1}}  # type: ignore[attr-defined]
    new = DenseNet.upgrade_state_dict(old)
    assert list(new) == [
        "features.denseblock1.denselayer1.norm1.weight",
        "features.denseblock1.denselayer1.conv2.weight",
        "features.norm0.weight",
    ]
    assert new._metadata == old._metadata  # type: ignore[attr-defined]
    # a file given by path goes through the same renaming (the review's finding)
    model = cnnzoo.create_model("densenet121", num_classes=3)
    legacy = {
        re.sub(r"(denselayer\d+\.(?:norm|relu|conv))(\d)\.", r"\1.\2.", k): v
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")  # torchvision's old files predate it
    }
    assert any(".norm.1." in k for k in legacy)
    path = tmp_path / "densenet121-legacy.pth"
    torch.save(legacy, path)
    loaded = cnnzoo.create_model("densenet121", weights=str(path), num_classes=3)
    for key, value in model.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(loaded.state_dict()[key], value), key


# --------------------------------------------------------------------------- the transform


@pytest.mark.parametrize(
    ("interpolation", "pil"), [("bilinear", "BILINEAR"), ("bicubic", "BICUBIC")]
)
def test_antialiased_resize_agrees_with_pillow(interpolation: str, pil: str) -> None:
    """Pillow, an independent implementation, always antialiases when it shrinks."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (12, 18, 3), dtype=np.uint8)).resize(
        (300, 200), Image.Resampling.BICUBIC
    )
    transform = ImageTransform(64, 64, interpolation=interpolation)
    ours = transform.resize(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1))
    theirs = np.asarray(image.resize((96, 64), getattr(Image.Resampling, pil)))
    assert ours.shape == (3, 64, 96)  # shorter side 64, longer int(64 * 300 / 200)
    assert np.abs(ours.permute(1, 2, 0).numpy().astype(int) - theirs.astype(int)).max() <= 1


def test_transform_crops_the_centre_and_normalises() -> None:
    # Pixel values encode their column: the crop's first column says where it started.
    columns = torch.arange(80, dtype=torch.uint8).repeat(3, 50, 1)  # (3, 50, 80)
    transform = ImageTransform(50, 32, interpolation="nearest", mean=(0.1, 0.2, 0.3), std=(2, 2, 2))
    out = transform(columns)
    assert out.shape == (3, 32, 32)
    left = round((80 - 32) / 2)  # torchvision's centre
    expected = (torch.arange(left, left + 32).float() / 255 - 0.1) / 2
    torch.testing.assert_close(out[0, 0], expected)
    # Smaller than the crop: zero padding around it, as torchvision's center_crop.
    tiny = ImageTransform(8, 10, interpolation="nearest", mean=(0, 0, 0), std=(1, 1, 1))
    padded = tiny(torch.full((3, 8, 8), 255, dtype=torch.uint8))
    assert (
        padded.shape == (3, 10, 10) and padded[:, 1:9, 1:9].min() == 1 and padded[:, 0].max() == 0
    )


def test_transform_takes_files_pil_images_and_batches(tmp_path: Path) -> None:
    file = _images(tmp_path, 1, size=(60, 90))[0]
    transform = get_weights("resnet50").transform  # resize 232, crop 224
    from_file = transform(file)
    from_pil = transform(Image.open(file))
    from_batch = transform(
        torch.from_numpy(np.asarray(Image.open(file)).copy()).permute(2, 0, 1)[None]
    )
    assert from_file.shape == (3, 224, 224) and from_batch.shape == (1, 3, 224, 224)
    torch.testing.assert_close(from_file, from_pil, rtol=0, atol=0)
    torch.testing.assert_close(from_file, from_batch[0], rtol=0, atol=0)


# --------------------------------------------------------------------------- predict


def test_predict_prints_imagenet_classes_with_the_weights_transform(
    served: tuple[Server, Path],
    resnet18_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, _ = served
    entry = _entry("resnet18", "TEST_V1", server.url + resnet18_file.name)
    _use_entries(monkeypatch, entry)
    files = _images(tmp_path / "photos", 2)
    assert (
        main(["predict", "resnet18", "--weights", "DEFAULT", *map(str, files), "--top-k", "5"]) == 0
    )
    out = capsys.readouterr().out.splitlines()
    # The reference: the model on exactly the entry's transform, computed here step by step.
    model = cnnzoo.create_model("resnet18", weights=str(resnet18_file)).eval()
    for k, file in enumerate(files):
        array = torch.from_numpy(np.asarray(Image.open(file).convert("RGB")).copy())
        x = entry.transform(array.permute(2, 0, 1))
        with torch.no_grad():
            probabilities = model(x[None]).softmax(1)[0]
        top = probabilities.topk(5)
        block = out[k * 6 : (k + 1) * 6]
        assert block[0] == f"{file}:"
        for line, p, i in zip(block[1:], top.values, top.indices, strict=True):
            assert line.split(None, 1) == [
                f"{float(p):.2%}",
                pretrained.imagenet_categories()[int(i)],
            ]
    python = cnnzoo.predict("resnet18", [files[0]], weights="TEST_V1", top_k=3, progress=False)
    assert [name for name, _ in python[0].top] == [line.split(None, 1)[1] for line in out[1:4]]


def test_predict_refuses_feature_weights_and_checkpoint_style_use(
    resnet18_file: Path,
    torch_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    features = replace(_entry("resnet18", "FEATURES", "http://127.0.0.1:9/f.pth"), categories=None)
    _use_entries(monkeypatch, features)
    _cache_dir(torch_home).mkdir(parents=True)
    (_cache_dir(torch_home) / "f.pth").write_bytes(resnet18_file.read_bytes())
    with pytest.raises(ValueError, match="has no ImageNet classifier"):
        cnnzoo.predict("resnet18", [torch.zeros(3, 40, 40, dtype=torch.uint8)], weights="FEATURES")
    assert main(["predict", "resnet18", "x.png"]) == 2
    assert "add --weights DEFAULT" in capsys.readouterr().err


# --------------------------------------------------------------------------- the other commands


def test_show_and_export_build_with_weights(
    resnet18_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["show", "resnet18", "--weights", str(resnet18_file), "--depth", "1"]) == 0
    assert "11,689,512" in capsys.readouterr().out  # torchvision's resnet18 parameter count
    calls: list[object] = []
    import cnnzoo.cli.export as export_cli

    monkeypatch.setattr(
        export_cli, "export_model", lambda model, *a, **k: calls.append(model) or 1 / 0
    )
    with pytest.raises(ZeroDivisionError):
        main(
            [
                "--debug",
                "export",
                "resnet18",
                "--weights",
                str(resnet18_file),
                "-o",
                str(tmp_path / "m.onnx"),
            ]
        )
    expected = torch.load(resnet18_file, weights_only=True)
    torch.testing.assert_close(calls[0].fc.bias, expected["fc.bias"], rtol=0, atol=0)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- fine-tuning


def test_finetune_one_command_on_an_image_folder(
    resnet18_file: Path,
    tmp_path: Path,
    torch_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    entry = _entry("resnet18", "TEST_V1", "http://127.0.0.1:9/" + resnet18_file.name)
    _use_entries(monkeypatch, entry)
    _cache_dir(torch_home).mkdir(parents=True)
    (_cache_dir(torch_home) / resnet18_file.name).write_bytes(resnet18_file.read_bytes())
    folder = tmp_path / "pets"
    for k, name in enumerate(("cat", "dog")):
        _images(folder / name, 6, size=(40, 40), seed=k)
    out = tmp_path / "run"
    argv = ["train", "resnet18", "--weights", "DEFAULT", "--data", str(folder)]
    assert main([*argv, "--epochs", "1", "--batch-size", "4", "--out", str(out), "-q"]) == 0
    checkpoint = torch.load(out / "last.pt", weights_only=True)
    config = checkpoint["config"]
    assert (config["weights"], config["recipe"], config["freeze"]) == (
        "TEST_V1",
        "finetune",
        "layer2",
    )
    state, start = checkpoint["model"], torch.load(resnet18_file, weights_only=True)
    assert state["fc.weight"].shape == (2, 512)  # a new head for the folder's two classes
    torch.testing.assert_close(
        state["layer2.1.conv2.weight"], start["layer2.1.conv2.weight"], rtol=0, atol=0
    )
    torch.testing.assert_close(
        state["layer1.0.bn1.running_mean"], start["layer1.0.bn1.running_mean"], rtol=0, atol=0
    )
    assert not torch.equal(state["layer4.1.conv2.weight"], start["layer4.1.conv2.weight"])
    # The weights' input size and statistics (crop 32, ImageNet mean/std), in training and after.
    from cnnzoo.train.predict import _eval_pipeline

    pipeline = _eval_pipeline(checkpoint, (3, 40, 40))
    assert pipeline.output_size((3, 40, 40)) == (3, 32, 32)
    assert pipeline.steps[-1].mean == entry.transform.mean  # type: ignore[attr-defined]
    capsys.readouterr()
    assert main(["predict", str(out), str(folder / "cat" / "000.png"), "--top-k", "1"]) == 0
    assert capsys.readouterr().out.split(": ")[1].split()[0] in ("cat", "dog")


def test_readme_pretrained_example_runs(
    resnet18_file: Path, tmp_path: Path, torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's Python example, with a generated resnet18 file where torchvision's would be
    cached (nothing is downloaded)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text("utf-8")
    section = readme.split("## Pretrained weights", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    _cache_dir(torch_home).mkdir(parents=True)
    (_cache_dir(torch_home) / "resnet18-f37072fd.pth").write_bytes(resnet18_file.read_bytes())
    monkeypatch.setenv(pretrained.WEIGHTS_URL_ENV, _closed_port_url())
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.zeros((300, 400, 3), dtype=np.uint8)).save("photo.jpg")
    namespace: dict[str, object] = {}
    exec(compile(code.group(1), "README.md", "exec"), namespace)
    assert namespace["x"].shape == (3, 224, 224)  # type: ignore[attr-defined]
    top5 = namespace["top5"]
    assert len(top5) == 5 and all(n in pretrained.imagenet_categories() for n, _ in top5)  # type: ignore[arg-type]
    assert namespace["tuned"].fc.out_features == 10  # type: ignore[attr-defined]


def test_freeze_points_are_checked_before_any_data_is_read() -> None:
    from cnnzoo.train.config import make_config

    assert make_config("resnet50", weights="DEFAULT").freeze == "layer2"  # stride 8
    assert make_config("vgg16", weights="DEFAULT").freeze == "features.22"  # conv4_3 (stride 8)
    assert make_config("resnet18", weights="DEFAULT", freeze="none").freeze is None
    assert make_config("resnet18", weights="DEFAULT").weights == "IMAGENET1K_V1"  # not DEFAULT
    with pytest.raises(ValueError, match="resnet18 has no module of that name; did you mean layer"):
        make_config("resnet18", weights="DEFAULT", freeze="layer9")


def test_weights_record_the_constructor_arguments_that_rebuild_the_model(tmp_path: Path) -> None:
    # The review's finding: googlenet/inception_v3 built for their weights (transform_input on,
    # googlenet's aux heads dropped) must be rebuilt the same way from a run's config, or eval,
    # resume and export see another model.
    original = cnnzoo.create_model("googlenet", num_classes=4, init_weights=True)
    path = tmp_path / "googlenet-own.pth"
    torch.save(original.state_dict(), path)
    loaded = cnnzoo.create_model("googlenet", weights=str(path), num_classes=4)
    assert loaded.pretrained_kwargs == {"transform_input": True, "aux_logits": True}
    rebuilt = cnnzoo.create_model("googlenet", num_classes=4, **loaded.pretrained_kwargs)
    assert rebuilt.transform_input and list(rebuilt.state_dict()) == list(loaded.state_dict())
    plain = cnnzoo.create_model("resnet20", num_classes=4)
    torch.save(plain.state_dict(), tmp_path / "r.pth")
    other = cnnzoo.create_model("resnet20", weights=str(tmp_path / "r.pth"), num_classes=4)
    assert other.pretrained_kwargs == {}
