"""Fetch dataset files: official URL then mirrors, MD5 verified, written atomically.

Each file streams into a temporary file beside its destination, is hashed on the way, and is
renamed into place only when its checksum matches, so an interrupted or corrupted download never
leaves a file that looks complete. A file already present with the right checksum is kept.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from cnnzoo import __version__

__all__ = ["DownloadError", "RemoteFile", "download_files", "file_md5"]

_CHUNK = 1 << 16


class DownloadError(OSError):
    """No source delivered a file with the right checksum; the message lists every attempt."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its name on disk, MD5 and the URLs to try in order."""

    filename: str
    md5: str
    urls: tuple[str, ...]


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


def _fetch(url: str, dest: Path, md5: str, timeout: float, stream: TextIO | None) -> None:
    """Download ``url`` to a temp file beside ``dest``, verify, rename. Raises on any failure."""
    request = urllib.request.Request(url, headers={"User-Agent": f"cnnzoo/{__version__}"})
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            progress = _Progress(dest.name, int(length) if length else None, stream)
            for block in iter(lambda: resp.read(_CHUNK), b""):
                out.write(block)
                digest.update(block)
                progress.update(len(block))
            progress.close()
        got = digest.hexdigest()
        if got != md5:
            raise DownloadError(f"checksum mismatch (MD5 {got}, expected {md5})")
        os.replace(tmp, dest)  # atomic on one filesystem: dest is whole or absent
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
    stream: TextIO | None = sys.stderr,
) -> list[Path]:
    """Make every file present and verified in ``dest_dir``; returns their paths.

    Tries each file's URLs in order; a checksum mismatch or network error moves on to the next.
    ``stream`` receives progress (``None`` for silence).
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for remote in files:
        dest = dest_dir / remote.filename
        if dest.is_file():
            if file_md5(dest) == remote.md5:
                if stream is not None:
                    print(f"{dest}: present, checksum OK", file=stream)
                paths.append(dest)
                continue
            if stream is not None:
                print(f"{dest}: checksum mismatch, downloading again", file=stream)
        failures: list[tuple[str, BaseException]] = []
        for url in remote.urls:
            try:
                _fetch(url, dest, remote.md5, timeout, stream)
                break
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
            raise DownloadError(
                f"could not download {remote.filename} to {dest_dir}: {tried}.{hint}"
            )
        paths.append(dest)
    return paths
