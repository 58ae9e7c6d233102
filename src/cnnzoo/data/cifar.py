"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) from their python pickles, safely.

The distributed files are Python 2 pickles of dicts holding ``data`` (a uint8 numpy array,
N x 3072, each row 1024 red, 1024 green, 1024 blue values of a 32x32 image in row order) and
``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100) as lists of ints. A pickle can name any
callable, so they are read with an unpickler that admits only what these dicts need: numpy's
array reconstruction and dtypes (no object dtypes). Anything else is refused before it runs.
They are read from the extracted folder or straight from the ``.tar.gz`` as distributed.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import math
import os
import pickle
import pickletools
import tarfile
import zlib
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
    # ceilings derived from the published files (10000 or 50000 rows of 3072 bytes, plus the
    # pickle's labels and framing): a member declaring more is refused before it is read (#13)
    max_batch_bytes: int = 10_000 * 3072 + (1 << 20)
    max_meta_bytes: int = 1 << 20

    @property
    def max_archive_bytes(self) -> int:
        """The most the whole decompressed archive may hold (every batch, meta and a readme)."""
        batches = len(self.train) + len(self.test)
        return batches * self.max_batch_bytes + self.max_meta_bytes + (4 << 20)


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
    max_batch_bytes=50_000 * 3072 + (2 << 20),
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
    # numpy pickles an empty placeholder here and fills it from the pickled bytes afterwards:
    # a large shape would allocate memory the file never paid for (#13)
    dims = shape if isinstance(shape, tuple) else (shape,)
    if not all(isinstance(d, int) and d >= 0 for d in dims) or math.prod(dims) > 1:
        raise pickle.UnpicklingError(f"array placeholder of shape {shape!r} (numpy writes (0,))")
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


_OPCODES = {ord(op.code): op for op in pickletools.opcodes}
_LENGTH_BYTES = {
    pickletools.TAKEN_FROM_ARGUMENT1: (1, False),
    pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
    pickletools.TAKEN_FROM_ARGUMENT4U: (4, False),
    pickletools.TAKEN_FROM_ARGUMENT8U: (8, False),
}


def _check_declared_lengths(data: bytes) -> None:
    """Walk the opcodes without building or decoding anything, checking that every declared
    length (bytes, strings, frames) fits in the bytes that follow. The unpickler allocates a
    bytes opcode's declared length before reading it: a 20-byte pickle declaring 2**40 bytes
    would ask for a terabyte (#13)."""
    position, end = 0, len(data)
    while position < end:
        op = _OPCODES.get(data[position])
        if op is None:
            raise pickle.UnpicklingError(f"unknown opcode 0x{data[position]:02x} at {position}")
        position += 1
        if op.name == "STOP":
            return
        arg = op.arg
        if arg is None:
            continue
        if arg.n >= 0:
            if op.name == "FRAME":
                length = int.from_bytes(data[position : position + 8], "little")
                if length > end - position - 8:
                    raise pickle.UnpicklingError(f"FRAME declares {length} bytes past the end")
            position += arg.n
        elif arg.n == pickletools.UP_TO_NEWLINE:
            for _ in range(2 if arg.name == "stringnl_noescape_pair" else 1):
                newline = data.find(b"\n", position)
                if newline < 0:
                    raise pickle.UnpicklingError(f"{op.name}: no newline after {position}")
                position = newline + 1
        else:
            size, signed = _LENGTH_BYTES[arg.n]
            length = int.from_bytes(data[position : position + size], "little", signed=signed)
            position += size
            if not 0 <= length <= end - position:
                raise pickle.UnpicklingError(
                    f"{op.name} declares {length} bytes, {max(0, end - position)} remain"
                )
            position += length
    raise pickle.UnpicklingError("truncated: no STOP opcode")


def safe_loads(data: bytes, source: str) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; errors name ``source``.

    The opcodes' declared lengths are checked against the data first (nothing is allocated for
    a length the file does not hold).
    """
    try:
        _check_declared_lengths(data)
        # encoding="bytes": the files are Python 2 pickles whose str keys arrive as bytes
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as error:  # any failure of a hostile or damaged file is the file's fault
        reason = " ".join(str(error).split()) or type(error).__name__
        raise DatasetError(f"{source}: not a valid CIFAR pickle ({reason})") from None


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


class _BoundedStream(io.RawIOBase):
    """A seekable decompressed stream that refuses to go past ``limit`` bytes (a tar bomb)."""

    def __init__(self, inner: Any, limit: int, path: Path) -> None:
        self.inner, self.limit, self.path = inner, limit, path

    def _refuse(self) -> DatasetError:
        return DatasetError(
            f"{self.path}: decompresses to more than {self.limit} bytes, the most a CIFAR "
            "archive holds (expected the archive as distributed)"
        )

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return int(self.inner.tell())

    def read(self, size: int | None = -1) -> bytes:
        room = self.limit - self.inner.tell()
        if size is None or size < 0 or size > room:
            size = room + 1  # one byte past the ceiling proves the stream is too long
        data: bytes = self.inner.read(size)
        if self.inner.tell() > self.limit:
            raise self._refuse()
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_END:
            raise io.UnsupportedOperation("seeking from the end of a compressed stream")
        target = offset if whence == io.SEEK_SET else self.inner.tell() + offset
        if target > self.limit:
            raise self._refuse()
        return int(self.inner.seek(target))


_COMPRESSED: tuple[tuple[bytes, Callable[[Any], Any]], ...] = (
    (b"\x1f\x8b", lambda f: gzip.GzipFile(fileobj=f, mode="rb")),
    (b"BZh", bz2.BZ2File),
    (b"\xfd7zXZ\x00", lzma.LZMAFile),
)


def _open_archive(path: Path, layout: CifarLayout, raw: Any) -> tarfile.TarFile:
    magic = raw.read(6)
    raw.seek(0)
    opener = next((o for m, o in _COMPRESSED if magic.startswith(m)), None)
    stream = raw if opener is None else _BoundedStream(opener(raw), layout.max_archive_bytes, path)
    return tarfile.open(fileobj=stream, mode="r:")


@contextmanager
def _member_reader(path: Path, layout: CifarLayout) -> Iterator[Callable[[str], tuple[bytes, str]]]:
    """Yields ``read(member) -> (bytes, where)`` over a CIFAR folder or the distributed archive.

    Each member's declared size is checked against the layout's ceiling before it is read, and
    the read itself stops there (#13).
    """

    def ceiling(member: str) -> int:
        return layout.max_meta_bytes if member == layout.meta else layout.max_batch_bytes

    def too_large(where: str, size: int, member: str) -> DatasetError:
        return DatasetError(
            f"{where}: {size} bytes, more than the {ceiling(member)} a CIFAR {member!r} file "
            "holds (expected the files as distributed)"
        )

    if path.is_dir():

        def read_file(member: str) -> tuple[bytes, str]:
            file = path / member
            if not file.is_file():
                raise DatasetError(f"{file}: missing (expected the CIFAR batch {member!r})")
            with open(file, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > ceiling(member):
                    raise too_large(str(file), size, member)
                return f.read(ceiling(member)), str(file)

        yield read_file
        return
    with open(path, "rb") as raw:
        try:
            archive = _open_archive(path, layout, raw)
        except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError) as error:
            raise DatasetError(f"{path}: not a readable tar archive ({error})") from None

        wanted = {f"{layout.folder}/{m}": m for m in (layout.meta, *layout.train, *layout.test)}
        index: dict[str, tarfile.TarInfo] = {}

        def find(name: str) -> tarfile.TarInfo:
            # headers are read in order and each wanted member's declared size is checked as
            # its header arrives, before the reader skips over (decompresses) its data
            while name not in index:
                info = archive.next()
                if info is None:
                    raise KeyError(name)
                member = wanted.get(info.name)
                if member is not None and info.name not in index:
                    if info.size > ceiling(member):
                        raise too_large(f"{path}:{info.name}", info.size, member)
                    index[info.name] = info
            return index[name]

        def read_member(member: str) -> tuple[bytes, str]:
            name = f"{layout.folder}/{member}"
            where = f"{path}:{name}"
            try:
                info = find(name)
                # read into memory only: nothing is extracted, so member paths cannot escape
                handle = archive.extractfile(info)
                if handle is None:
                    raise KeyError(name)
                return handle.read(ceiling(member)), where
            except KeyError:
                raise DatasetError(f"{path}: the archive has no member {name!r}") from None
            except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError) as error:
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
