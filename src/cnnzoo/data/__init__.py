"""Datasets and the input pipeline: real formats read safely, an embedded default, batched
on-device augmentation and a resumable, shardable loader.

>>> from cnnzoo.data import load_dataset, build_pipeline, DeviceLoader
>>> train = load_dataset("digits")  # the embedded default: no network, no --data-dir
>>> pipe = build_pipeline("none", mean=train.mean, std=train.std, train=True,
...                       data_size=train.image_size, model_input=(1, 32, 32), fixed_size=True)
>>> loader = DeviceLoader(train.images, train.labels, batch_size=64, transform=pipe, seed=0)
"""

from cnnzoo.data.catalog import (
    DATASETS,
    DEFAULT_DATASET,
    DatasetSpec,
    dataset_spec,
    download_dataset,
    load_dataset,
)
from cnnzoo.data.dataset import DatasetError, ImageDataset, channel_stats, default_data_dir
from cnnzoo.data.download import DownloadError, RemoteFile, download_files
from cnnzoo.data.loader import DeviceLoader, shard_indices
from cnnzoo.data.transforms import (
    PRESETS,
    InputAdaptation,
    Pipeline,
    Preset,
    adapt_stats,
    build_pipeline,
    plan_input_adaptation,
)

__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "PRESETS",
    "DatasetError",
    "DatasetSpec",
    "DeviceLoader",
    "DownloadError",
    "ImageDataset",
    "InputAdaptation",
    "Pipeline",
    "Preset",
    "RemoteFile",
    "adapt_stats",
    "build_pipeline",
    "channel_stats",
    "dataset_spec",
    "default_data_dir",
    "download_dataset",
    "download_files",
    "load_dataset",
    "plan_input_adaptation",
    "shard_indices",
]
