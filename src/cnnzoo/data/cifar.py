"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) from their python pickles, safely.

The distributed files are Python 2 pickles of dicts holding ``data`` (a uint8 numpy array,
N x 3072, each row 1024 red, 1024 green, 1024 blue values of a 32x32 image in row order) and
``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100) as lists of ints. A pickle can name any
callable, so they are read with an unpickler that admits only what these dicts need: numpy's
array reconstruction and dtypes (no object dtypes). Anything else is refused before it runs.
They are read from the extracted folder or straight from the ``.tar.gz`` as distributed.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnzoo.data.dataset import DatasetError

__all__ = ["CIFAR10", "CIFAR100", "CifarLayout", "RestrictedUnpickler", "load_cifar", "safe_loads"]


@dataclass(frozen=True)
class CifarLayout:
    """Where a CIFAR variant keeps its batches and which keys they use."""

    folder: str  # the folder inside the archive
    archive: str  # the file as distributed
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    label_key: str
    names_key: str


CIFAR10 = CifarLayout(
    folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    train=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test=("test_batch",),
    meta="batches.meta",
    label_key="labels",
    names_key="label_names",
)
CIFAR100 = CifarLayout(
    folder="cifar-100-python",
    archive="cifar-100-python.tar.gz",
    train=("train",),
    test=("test",),
    meta="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
)


def _numpy_attr(module: str, name: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core; files written by numpy 1 name the old path.
    for candidate in (module.replace("numpy.core", "numpy._core"), module):
        try:
            return getattr(import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no {module}.{name}")


def _checked_dtype(*args: Any) -> np.dtype[Any]:
    dtype: np.dtype[Any] = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError("object arrays are not allowed")
    return dtype


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError("only plain numpy arrays are allowed")
    return _numpy_attr("numpy.core.multiarray", "_reconstruct")(  # type: ignore[no-any-return]
        np.ndarray, shape, _checked_dtype(dtype)
    )


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    # numpy >= 1.16 pickles arrays this way under protocol 5
    return _numpy_attr("numpy.core.numeric", "_frombuffer")(  # type: ignore[no-any-return]
        buffer, _checked_dtype(dtype), shape, order
    )


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 writes bytes as _codecs.encode(str, "latin1") under protocol 2; nothing else.
    if encoding.lower().replace("-", "") != "latin1":
        raise pickle.UnpicklingError(f"codec {encoding!r} is not allowed")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Callable[..., Any]] = {
    ("numpy", "dtype"): _checked_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _latin1_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Admits dicts, lists, str/bytes, numbers and plain numpy arrays; refuses other globals."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray  # the class itself: _reconstruct checks it is exactly this
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name}: CIFAR batches hold only dicts, lists, bytes "
                "and numpy arrays"
            )
        return allowed


def safe_loads(data: bytes, source: str) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; errors name ``source``."""
    try:
        # encoding="bytes": the files are Python 2 pickles whose str keys arrive as bytes
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as error:  # any failure of a hostile or damaged file is the file's fault
        raise DatasetError(f"{source}: not a valid CIFAR pickle ({error})") from None


def _as_str_keys(obj: Any, source: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DatasetError(f"{source}: expected a dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _parse_batch(obj: Any, label_key: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _as_str_keys(obj, source)
    for key in ("data", label_key):
        if key not in batch:
            raise DatasetError(
                f"{source}: missing key {key!r} (found {sorted(batch)}; expected 'data' and "
                f"{label_key!r})"
            )
    data, labels = batch["data"], batch[label_key]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2):
        raise DatasetError(f"{source}: 'data' must be a uint8 array of shape (N, 3072)")
    if data.shape[1] != 3 * 32 * 32:
        raise DatasetError(f"{source}: 'data' rows have {data.shape[1]} values, expected 3072")
    if not isinstance(labels, list | np.ndarray) or not all(
        isinstance(v, int | np.integer) for v in labels
    ):
        raise DatasetError(f"{source}: {label_key!r} must be a list of ints")
    if len(labels) != len(data):
        raise DatasetError(f"{source}: count mismatch: {len(data)} images but {len(labels)} labels")
    return data, np.asarray(labels, dtype=np.int64)


def _parse_names(obj: Any, names_key: str, source: str) -> tuple[str, ...]:
    meta = _as_str_keys(obj, source)
    names = meta.get(names_key)
    if not isinstance(names, list) or not all(isinstance(n, bytes | str) for n in names):
        raise DatasetError(f"{source}: expected {names_key!r}: a list of class names")
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else n for n in names)


@contextmanager
def _member_reader(path: Path, layout: CifarLayout) -> Iterator[Callable[[str], tuple[bytes, str]]]:
    """Yields ``read(member) -> (bytes, where)`` over a CIFAR folder or the distributed archive."""
    if path.is_dir():

        def read_file(member: str) -> tuple[bytes, str]:
            file = path / member
            if not file.is_file():
                raise DatasetError(f"{file}: missing (expected the CIFAR batch {member!r})")
            return file.read_bytes(), str(file)

        yield read_file
        return
    try:
        archive = tarfile.open(path, "r:*")  # noqa: SIM115 (closed by the `with` below)
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DatasetError(f"{path}: not a readable tar archive ({error})") from None

    def read_member(member: str) -> tuple[bytes, str]:
        name = f"{layout.folder}/{member}"
        where = f"{path}:{name}"
        try:
            # read into memory only: nothing is extracted, so member paths cannot escape
            handle = archive.extractfile(name)
            if handle is None:
                raise KeyError(name)
            return handle.read(), where
        except KeyError:
            raise DatasetError(f"{path}: the archive has no member {name!r}") from None
        except (tarfile.TarError, OSError, EOFError) as error:
            raise DatasetError(f"{where}: truncated or corrupt archive ({error})") from None

    with archive:
        yield read_member


def load_cifar(
    path: Path, layout: CifarLayout, split: str
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Images uint8 (N, 3, 32, 32), labels int64 and class names from a folder or ``.tar.gz``."""
    members = {"train": layout.train, "test": layout.test}[split]
    with _member_reader(path, layout) as read:
        raw, where = read(layout.meta)
        classes = _parse_names(safe_loads(raw, where), layout.names_key, where)
        datas, labels = [], []
        for member in members:
            raw, where = read(member)
            data, label = _parse_batch(safe_loads(raw, where), layout.label_key, where)
            if len(label) and not 0 <= label.min() <= label.max() < len(classes):
                raise DatasetError(
                    f"{where}: labels span {label.min()}..{label.max()}, expected "
                    f"0..{len(classes) - 1} ({len(classes)} classes in {layout.meta})"
                )
            datas.append(data)
            labels.append(label)
    images = torch.from_numpy(np.concatenate(datas).reshape(-1, 3, 32, 32))
    return images, torch.from_numpy(np.concatenate(labels)), classes
