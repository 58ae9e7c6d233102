"""How a trained model's inputs are made: the facts an exported file carries so that it can be
used without its run directory (issue 12), and the data they describe.

A run's evaluation pipeline is rebuilt from what the run recorded (the checkpoint's ``config``
and ``data``, and ``config.json`` beside it), read defensively: explicit fields (``input_size``,
``classes``, ``mean``/``std``) win where a run has them; otherwise they are derived the way the
trainer derives them.

>>> prep = Preprocessing.from_run("runs/lenet5")
>>> prep.input_size, prep.classes[:3]
((1, 32, 32), ('0', '1', '2'))
>>> x = prep.pipeline()(uint8_images)  # normalised float32 model input
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from cnnzoo.data import ImageDataset, Pipeline, build_pipeline, load_dataset
from cnnzoo.data.transforms import Normalize
from cnnzoo.registry import model_info

__all__ = ["METADATA_KEY", "Preprocessing", "batches"]

# The key of the JSON document in an ONNX file's metadata_props and the name of the TorchScript
# extra file. Plain keys beside it (classes, input_size, mean, std, preprocess) are for readers
# that do not use cnnzoo.
METADATA_KEY = "cnnzoo"
METADATA_VERSION = 1

ImageSize = tuple[int, int, int]


def _size(value: Any) -> ImageSize:
    c, h, w = (int(v) for v in value)
    return c, h, w


@dataclass(frozen=True)
class Preprocessing:
    """The evaluation-time input pipeline of a model, as plain data.

    ``image_size`` is the size of the dataset's images (C, H, W), ``input_size`` the model's
    input after the pipeline; ``mean``/``std`` are the dataset's statistics (the pipeline
    adapts them to the model's channels); ``preset`` is the augmentation preset whose
    evaluation steps run; ``model_input``, ``min_size``, ``fixed_size`` and ``policy`` are what
    decided padding or resizing (``plan_input_adaptation``).
    """

    model: str
    data: str | None  # a dataset name or an image folder; None: not known
    data_dir: str | None
    classes: tuple[str, ...]
    image_size: ImageSize
    mean: tuple[float, ...]
    std: tuple[float, ...]
    preset: str = "none"
    model_input: ImageSize | None = None
    min_size: tuple[int, int] | None = None
    fixed_size: bool = False
    policy: Literal["auto", "model", "keep"] = "auto"

    def pipeline(self) -> Pipeline:
        """uint8 (N, C, H, W) images of ``image_size`` -> normalised float32 model input."""
        return build_pipeline(
            self.preset,
            mean=self.mean,
            std=self.std,
            train=False,
            data_size=self.image_size,
            model_input=self.model_input,
            min_size=self.min_size,
            fixed_size=self.fixed_size,
            policy=self.policy,
        )

    @property
    def input_size(self) -> ImageSize:
        return _size(self.pipeline().output_size(self.image_size))

    # -- from a run ---------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(
        cls, checkpoint: Mapping[str, Any], run_config: Mapping[str, Any] | None = None
    ) -> Preprocessing:
        """From a cnnzoo training checkpoint (and the run's ``config.json``, if given).

        Raises ``ValueError`` naming what is missing when neither records the dataset's
        classes, statistics and image size.
        """
        config = dict(run_config or {})
        config.update(checkpoint.get("config") or {})
        data = dict(config.get("data_info") or {})
        data.update(checkpoint.get("data") or {})
        # The trainer's own record of what the model expects (format 2): the trained input size
        # and the normalisation actually used (a fine-tuned run's are the weights', not the data's).
        inference = dict((run_config or {}).get("inference") or {})
        inference.update(checkpoint.get("inference") or {})
        for key in ("classes", "mean", "std"):
            if inference.get(key) is not None:
                data[key] = inference[key]
        missing = [k for k in ("classes", "mean", "std", "image_size") if data.get(k) is None]
        if "model" not in config or missing:
            what = ", ".join((["model"] if "model" not in config else []) + missing)
            raise ValueError(f"the run does not record its {what}")
        name = str(config["model"])
        info = model_info(name)
        kwargs = config.get("model_kwargs") or {}
        channels = int(kwargs.get("in_channels", info.input_size[0]))
        image_size = _size(data["image_size"])
        prep = cls(
            model=name,
            data=config.get("data") or data.get("name"),
            data_dir=config.get("data_dir"),
            classes=tuple(str(c) for c in data["classes"]),
            image_size=image_size,
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            preset=str(config.get("augment") or "none"),
            model_input=(channels, info.input_size[1], info.input_size[2]),
            min_size=info.min_size,
            fixed_size=info.fixed_size,
        )
        # A run that records its trained input size explicitly is believed over the derivation.
        recorded = inference.get("input_size") or _first(
            ("input_size", "model_input_size", "trained_input_size"), data, config, checkpoint
        )
        if recorded is not None and _size(recorded) != prep.input_size:
            policy: Literal["model", "keep"] = (
                "keep" if _size(recorded)[1:] == image_size[1:] else "model"
            )
            prep = cls(**{**asdict(prep), "model_input": _size(recorded), "policy": policy})
            prep = _fix_tuples(prep)
        return prep

    @classmethod
    def from_run(cls, path: str | Path) -> Preprocessing:
        """From a run directory or one of its checkpoints."""
        from cnnzoo.train.checkpoint import load_checkpoint

        path = Path(path)
        checkpoint = load_checkpoint(path)
        return cls.from_checkpoint(checkpoint, read_run_config(path))

    @classmethod
    def for_dataset(
        cls, model: str, dataset: ImageDataset, input_size: ImageSize, data_dir: str | None
    ) -> Preprocessing:
        """For a model (registered name, or a file's name) fed ``dataset``'s images at exactly
        ``input_size``."""
        try:
            info: Any = model_info(model)
        except ValueError:  # not a registered name: no size limits to respect
            info = None
        return cls(
            model=model,
            data=dataset.source if Path(dataset.source).is_dir() else dataset.name,
            data_dir=data_dir,
            classes=tuple(dataset.classes),
            image_size=_size(dataset.image_size),
            mean=tuple(dataset.mean),
            std=tuple(dataset.std),
            model_input=input_size,
            min_size=info.min_size if info is not None else None,
            fixed_size=info.fixed_size if info is not None else False,
            policy="model",
        )

    # -- data -----------------------------------------------------------------------------------

    def load_split(self, split: str, data: str | None = None) -> ImageDataset:
        """``split`` (train or test) of the run's dataset, or of ``data`` (same classes)."""
        source = data or self.data
        if source is None:
            raise ValueError("the run does not record its dataset: give the data explicitly")
        dataset = load_dataset(
            source,
            self.data_dir,
            split,
            image_size=(self.image_size[1], self.image_size[2]),
        )
        if tuple(dataset.classes) != self.classes:
            raise ValueError(
                f"{source} has classes {list(dataset.classes)[:10]}, the model was trained on "
                f"{list(self.classes)[:10]}"
            )
        if dataset.image_size[0] != self.image_size[0]:
            raise ValueError(
                f"{source} has {dataset.image_size[0]}-channel images, the model was trained "
                f"on {self.image_size[0]}-channel ones"
            )
        return dataset

    # -- metadata -------------------------------------------------------------------------------

    def to_metadata(self) -> dict[str, str]:
        """String key/value pairs for ONNX ``metadata_props`` / a TorchScript extra file: the
        whole record under ``"cnnzoo"`` (JSON) and plain keys for other readers."""
        pipeline = self.pipeline()
        normalize = next((s for s in pipeline.steps if isinstance(s, Normalize)), None)
        record = {"version": METADATA_VERSION, **asdict(self)}
        plain = {
            "classes": list(self.classes),
            "input_size": list(self.input_size),
            "image_size": list(self.image_size),
            # the statistics as applied to the model's channels, on pixels scaled to 0..1
            "mean": list(normalize.mean) if normalize is not None else None,
            "std": list(normalize.std) if normalize is not None else None,
            "preprocess": str(pipeline),
        }
        return {METADATA_KEY: json.dumps(record), **{k: json.dumps(v) for k, v in plain.items()}}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> Preprocessing:
        """The inverse of ``to_metadata`` (only its ``"cnnzoo"`` entry is read)."""
        if METADATA_KEY not in metadata:
            raise ValueError("the file carries no cnnzoo preprocessing metadata")
        record = json.loads(metadata[METADATA_KEY])
        version = record.pop("version", None)
        if version != METADATA_VERSION:
            raise ValueError(f"unknown cnnzoo metadata version {version!r}")
        names = {f.name for f in fields(cls)}
        return _fix_tuples(cls(**{k: v for k, v in record.items() if k in names}))


def _fix_tuples(prep: Preprocessing) -> Preprocessing:
    """JSON and ``asdict`` give lists: make the sequences tuples again."""
    values = asdict(prep)
    for key in ("classes", "mean", "std"):
        values[key] = tuple(values[key])
    values["classes"] = tuple(str(c) for c in values["classes"])
    values["mean"] = tuple(float(v) for v in values["mean"])
    values["std"] = tuple(float(v) for v in values["std"])
    values["image_size"] = _size(values["image_size"])
    if values["model_input"] is not None:
        values["model_input"] = _size(values["model_input"])
    if values["min_size"] is not None:
        values["min_size"] = (int(values["min_size"][0]), int(values["min_size"][1]))
    return Preprocessing(**values)


def _first(keys: tuple[str, ...], *sources: Mapping[str, Any]) -> Any:
    for source in sources:
        for key in keys:
            if source.get(key) is not None:
                return source[key]
    return None


def read_run_config(path: str | Path) -> dict[str, Any]:
    """The ``config.json`` of the run ``path`` belongs to ({} if there is none or it is bad)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    try:
        document = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def batches(
    dataset: ImageDataset,
    pipeline: Pipeline,
    batch_size: int,
    *,
    limit: int | None = None,
    shuffle_seed: int | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """(model input, labels) batches of ``dataset`` through ``pipeline``; at most ``limit``
    batches; with ``shuffle_seed``, in a seeded random order (a calibration set drawn from
    every class, not the first classes of a file sorted by label)."""
    count = len(dataset.labels)
    if shuffle_seed is None:
        order = torch.arange(count)
    else:
        order = torch.randperm(count, generator=torch.Generator().manual_seed(shuffle_seed))
    for number, start in enumerate(range(0, count, batch_size)):
        if limit is not None and number >= limit:
            return
        index = order[start : start + batch_size]
        yield pipeline(dataset.images[index]).float(), dataset.labels[index]
