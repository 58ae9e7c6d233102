"""Fetch dataset files: official URL then mirrors, MD5 verified, written atomically.

Each file streams into a temporary file beside its destination, is hashed on the way, and is
renamed into place only when its checksum matches, so an interrupted or corrupted download never
leaves a file that looks complete. A file already present with the right checksum is kept.

A server cannot keep a download going forever or fill the disk (#13): each file has a size cap
derived from what the dataset is known to hold (a larger Content-Length or body is cut off), and
one deadline for all of its attempts, besides the per-read ``timeout``. The temporary file is
removed on every exit path, SIGTERM included.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from cnnzoo import __version__

__all__ = [
    "DownloadError",
    "LocalWriteError",
    "RemoteFile",
    "default_deadline",
    "download_files",
    "file_md5",
]

_CHUNK = 1 << 16


class DownloadError(OSError):
    """No source delivered a file with the right checksum; the message lists every attempt."""


class LocalWriteError(OSError):
    """Writing a downloaded file failed on this machine (disk full, read-only, permission)."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its name on disk, MD5, the URLs to try in order and the most
    bytes it can hold (None: no cap besides the deadline)."""

    filename: str
    md5: str
    urls: tuple[str, ...]
    max_bytes: int | None = None


class _Cut(DownloadError):
    """The server overstepped a bound (size or deadline): the next source is tried."""


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While downloading, SIGTERM raises SystemExit(143) so ``finally`` removes the temp file
    (the default action would kill the process and leave it). Main thread, default handler only.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        yield  # someone (a trainer, a test runner) already handles it
        return

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class _Progress:
    """A one-line progress bar on a terminal; a single summary line elsewhere."""

    def __init__(self, name: str, total: int | None, stream: TextIO | None) -> None:
        self.name, self.total, self.stream = name, total, stream
        self.done = 0
        self.last = 0.0
        self.live = stream is not None and stream.isatty()

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.live and now - self.last > 0.1:
            self.last = now
            self._draw()

    def _draw(self, end: str = "") -> None:
        assert self.stream is not None
        mb = self.done / 1e6
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            bar = "#" * int(30 * fraction)
            text = (
                f"{self.name} [{bar:<30}] {100 * fraction:5.1f}% {mb:.1f}/{self.total / 1e6:.1f} MB"
            )
        else:
            text = f"{self.name} {mb:.1f} MB"
        self.stream.write(f"\r{text}{end}")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None:
            self._draw(end="\n")


def _local(error: OSError, path: Path) -> LocalWriteError:
    """A failure to write our own file (disk full, read-only, permission): never the server's
    fault, so no other source is tried; the error names the file."""
    return LocalWriteError(error.errno, error.strerror or str(error), str(path))


def _fetch(
    url: str,
    dest: Path,
    remote: RemoteFile,
    timeout: float,
    deadline: float,
    stream: TextIO | None,
) -> None:
    """Download ``url`` to a temp file beside ``dest``, verify, rename. Raises on any failure."""
    request = urllib.request.Request(url, headers={"User-Agent": f"cnnzoo/{__version__}"})
    cap = remote.max_bytes
    try:
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as error:
        raise _local(error, dest) from None
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Cut("deadline passed before this source was tried")
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(request, timeout=min(timeout, left)) as resp,
        ):
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if cap is not None and total is not None and total > cap:
                raise _Cut(f"the server announces {total} bytes, the file holds at most {cap}")
            progress = _Progress(dest.name, total, stream)
            done = 0
            while True:
                # read1 returns what has arrived: a trickling server cannot hold one read open
                block = resp.read1(_CHUNK)
                if not block:
                    break
                done += len(block)
                if cap is not None and done > cap:
                    raise _Cut(f"the server sent more than {cap} bytes, the most the file holds")
                if time.monotonic() > deadline:
                    raise _Cut(f"not finished within the deadline ({done} bytes received)")
                try:
                    out.write(block)
                except OSError as error:
                    raise _local(error, tmp) from None
                digest.update(block)
                progress.update(len(block))
            progress.close()
        got = digest.hexdigest()
        if got != remote.md5:
            raise DownloadError(f"checksum mismatch (MD5 {got}, expected {remote.md5})")
        try:
            os.replace(tmp, dest)  # atomic on one filesystem: dest is whole or absent
        except OSError as error:
            raise _local(error, dest) from None
    finally:
        tmp.unlink(missing_ok=True)


def _is_network_error(error: BaseException) -> bool:
    if isinstance(error, urllib.error.HTTPError | DownloadError):
        return False  # a server answered (an error status, or bytes that failed the checksum)
    reason = getattr(error, "reason", error)
    return isinstance(reason, OSError | socket.timeout) or isinstance(error, TimeoutError)


def download_files(
    files: Sequence[RemoteFile],
    dest_dir: str | Path,
    *,
    timeout: float = 30.0,
    deadline: float | None = None,
    stream: TextIO | None = sys.stderr,
) -> list[Path]:
    """Make every file present and verified in ``dest_dir``; returns their paths.

    Tries each file's URLs in order; a checksum mismatch, network error, a body over the file's
    ``max_bytes`` or the deadline moves on to the next. ``timeout`` bounds each connection and
    read; ``deadline`` (seconds, default :func:`default_deadline`) bounds all attempts at one
    file together. ``stream`` receives progress (``None`` for silence). Writing errors here
    (disk full, read-only, permission) raise :class:`OSError` naming the file, at once.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    with _sigterm_unwinds():
        return [_download_one(remote, dest_dir, timeout, deadline, stream) for remote in files]


def default_deadline(remote: RemoteFile) -> float:
    """Ten minutes, plus the time the file's cap takes at 100 kB/s (a slow but honest link)."""
    return 600.0 + (remote.max_bytes or 0) / 100_000


def _download_one(
    remote: RemoteFile,
    dest_dir: Path,
    timeout: float,
    deadline: float | None,
    stream: TextIO | None,
) -> Path:
    dest = dest_dir / remote.filename
    if dest.is_file():
        if file_md5(dest) == remote.md5:
            if stream is not None:
                print(f"{dest}: present, checksum OK", file=stream)
            return dest
        if stream is not None:
            print(f"{dest}: checksum mismatch, downloading again", file=stream)
    failures: list[tuple[str, BaseException]] = []
    seconds = default_deadline(remote) if deadline is None else deadline
    ends = time.monotonic() + seconds
    for url in remote.urls:
        try:
            _fetch(url, dest, remote, timeout, ends, stream)
            break
        except LocalWriteError:
            raise
        except (OSError, ValueError) as error:  # URLError, HTTPError, timeouts, bad URLs
            failures.append((url, error))
            if stream is not None:
                print(f"{url}: {error} (trying the next source)", file=stream)
    else:
        tried = "; ".join(f"{url}: {error}" for url, error in failures)
        offline = failures and all(_is_network_error(e) for _, e in failures)
        hint = (
            " No source could be reached: are you offline? Copy the file into the folder by "
            "hand to use it without a network."
            if offline
            else ""
        )
        raise DownloadError(f"could not download {remote.filename} to {dest_dir}: {tried}.{hint}")
    return dest
