"""Downloads against a local HTTP server on 127.0.0.1 serving generated files: no network."""

from __future__ import annotations

import errno
import functools
import hashlib
import http.server
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cnnzoo.cli import main
from cnnzoo.data import DATASETS, DownloadError, RemoteFile, download_files, load_dataset
from cnnzoo.data.catalog import DatasetSpec
from cnnzoo.data.idx import write_idx


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass


class Server:
    def __init__(self, root: Path) -> None:
        handler = functools.partial(_Handler, directory=str(root))
        _Handler.requests = self.requests = []
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


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    with Server(root) as server:
        yield server, root


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"  # nothing listens there any more


def test_download_verifies_and_renames_into_place(
    served: tuple[Server, Path], tmp_path: Path
) -> None:
    server, www = served
    payload = np.random.default_rng(0).bytes(300_000)
    (www / "a.bin").write_bytes(payload)
    out = io.StringIO()
    paths = download_files(
        [RemoteFile("a.bin", _md5(payload), (server.url + "a.bin",))], tmp_path / "d", stream=out
    )
    assert paths == [tmp_path / "d" / "a.bin"] and paths[0].read_bytes() == payload
    assert "a.bin" in out.getvalue() and "0.3/0.3 MB" in out.getvalue()  # the progress line
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["a.bin"]  # no temp files left


def test_corrupted_file_is_rejected_by_checksum_and_never_lands(
    served: tuple[Server, Path], tmp_path: Path
) -> None:
    server, www = served
    good = b"the real bytes" * 1000
    (www / "f.gz").write_bytes(good[:-1] + b"X")  # one byte flipped
    remote = RemoteFile("f.gz", _md5(good), (server.url + "f.gz",))
    with pytest.raises(DownloadError) as info:
        download_files([remote], tmp_path / "d", stream=None)
    assert "f.gz: checksum mismatch (MD5 " in str(info.value)
    assert f"expected {_md5(good)}" in str(info.value)
    assert "offline" not in str(info.value)  # a server answered: not a network problem
    assert list((tmp_path / "d").iterdir()) == []  # neither the file nor its temp


def test_mirrors_are_tried_in_order_until_one_verifies(
    served: tuple[Server, Path], tmp_path: Path
) -> None:
    server, www = served
    good = b"payload" * 100
    (www / "bad").mkdir()
    (www / "bad" / "x").write_bytes(b"corrupt")
    (www / "good").mkdir()
    (www / "good" / "x").write_bytes(good)
    urls = (server.url + "missing/x", server.url + "bad/x", server.url + "good/x")
    download_files([RemoteFile("x", _md5(good), urls)], tmp_path, stream=None)
    assert (tmp_path / "x").read_bytes() == good
    assert server.requests == ["/missing/x", "/bad/x", "/good/x"]


def test_a_verified_file_is_not_downloaded_again_a_bad_one_is(
    served: tuple[Server, Path], tmp_path: Path
) -> None:
    server, www = served
    good = b"abc" * 50
    (www / "x").write_bytes(good)
    remote = RemoteFile("x", _md5(good), (server.url + "x",))
    (tmp_path / "x").write_bytes(good)
    download_files([remote], tmp_path, stream=None)
    assert server.requests == []
    (tmp_path / "x").write_bytes(b"stale")
    download_files([remote], tmp_path, stream=None)
    assert server.requests == ["/x"] and (tmp_path / "x").read_bytes() == good


def test_offline_gives_one_clear_error(tmp_path: Path) -> None:
    remote = RemoteFile("x", "0" * 32, (_closed_port_url() + "x", _closed_port_url() + "x"))
    with pytest.raises(DownloadError) as info:
        download_files([remote], tmp_path, stream=None, timeout=5)
    message = str(info.value)
    assert message.startswith(f"could not download x to {tmp_path}")
    assert "are you offline?" in message and message.count("127.0.0.1") == 2


def _serve_mnist(www: Path) -> dict[str, str]:
    rng = np.random.default_rng(0)
    md5s = {}
    for prefix, n in (("train", 20), ("t10k", 6)):
        for kind, array in (
            ("images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
            ("labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8)),
        ):
            name = f"{prefix}-{kind}.gz"
            write_idx(www / name, array)
            md5s[name] = _md5((www / name).read_bytes())
    return md5s


def test_cli_download_then_load_end_to_end(
    served: tuple[Server, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, www = served
    md5s = _serve_mnist(www)
    spec = DATASETS["mnist"]
    # the real URLs are removed so nothing can reach past 127.0.0.1; --mirror supplies the server
    local = DatasetSpec(
        **{**spec.__dict__, "files": tuple(RemoteFile(n, m, ()) for n, m in md5s.items())}
    )
    monkeypatch.setitem(DATASETS, "mnist", local)
    data_dir = tmp_path / "data"
    args = ["data", "download", "mnist", "--data-dir", str(data_dir), "--mirror", server.url]
    assert main(args) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(data_dir / "mnist" / n) for n in md5s]
    assert len(load_dataset("mnist", data_dir, "train")) == 20
    assert len(load_dataset("mnist", data_dir, "test")) == 6
    # a second run finds everything verified and fetches nothing
    before = len(server.requests)
    assert main([*args, "--quiet"]) == 0
    assert len(server.requests) == before


def test_cli_download_errors_are_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = DATASETS["cifar10"]
    offline = DatasetSpec(
        **{**spec.__dict__, "files": (RemoteFile("cifar-10-python.tar.gz", "0" * 32, ()),)}
    )
    monkeypatch.setitem(DATASETS, "cifar10", offline)
    args = ["data", "download", "cifar10", "--data-dir", str(tmp_path), "--quiet"]
    assert main([*args, "--mirror", _closed_port_url(), "--timeout", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cnnzoo data: error: could not download")
    assert "offline" in err[0]
    assert main(["data", "download", "digits"]) == 2
    assert "needs no download: it installs with cnnzoo" in capsys.readouterr().err


# --- hostile servers (#13): a deadline for the whole file, a size cap, no .part left --------


class _HostileHandler(http.server.BaseHTTPRequestHandler):
    """/trickle: 1 byte every 50 ms forever; /endless: zeros forever; /liar: announces 1 GB."""

    def do_GET(self) -> None:
        self.send_response(200)
        if self.path == "/liar":
            self.send_header("Content-Length", str(10**9))
        self.end_headers()
        try:
            while True:
                if self.path == "/trickle":
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.05)
                else:
                    self.wfile.write(bytes(1 << 16))
        except OSError:  # the client hung up: what the tests want
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def hostile_url() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HostileHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02})
    thread.daemon = True
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_a_trickling_server_is_cut_off_by_the_deadline(hostile_url: str, tmp_path: Path) -> None:
    # the issue: `--timeout` bounded each read, so 1 byte every 2 s kept it "downloading" forever
    remote = RemoteFile("x", "0" * 32, (hostile_url + "trickle",), max_bytes=10**6)
    with pytest.raises(DownloadError, match=r"trickle: not finished within the deadline"):
        download_files([remote], tmp_path, stream=None, timeout=5, deadline=0.5)
    assert list(tmp_path.iterdir()) == []  # no .part left


def test_an_endless_body_is_cut_at_the_files_size_cap(hostile_url: str, tmp_path: Path) -> None:
    remote = RemoteFile("x", "0" * 32, (hostile_url + "endless",), max_bytes=1 << 20)
    with pytest.raises(DownloadError, match=r"sent more than 1048576 bytes"):
        download_files([remote], tmp_path, stream=None, timeout=5, deadline=60)
    assert list(tmp_path.iterdir()) == []


def test_an_announced_size_over_the_cap_is_refused_before_reading(
    hostile_url: str, tmp_path: Path
) -> None:
    remote = RemoteFile("x", "0" * 32, (hostile_url + "liar",), max_bytes=1 << 20)
    with pytest.raises(DownloadError, match=r"announces 1000000000 bytes, the file holds at most"):
        download_files([remote], tmp_path, stream=None, timeout=5, deadline=60)
    assert list(tmp_path.iterdir()) == []


def test_every_known_file_has_a_cap_from_its_published_size() -> None:
    for spec in DATASETS.values():
        for remote in spec.files:
            assert remote.max_bytes is not None, remote.filename
    # MNIST's training images: 9,912,422 bytes as published (yann.lecun.com/exdb/mnist);
    # the cap is the raw 47,040,016 bytes plus gzip framing, so any honest file fits
    mnist = {f.filename: f for f in DATASETS["mnist"].files}
    assert 9_912_422 < mnist["train-images-idx3-ubyte.gz"].max_bytes < 48_000_000
    # CIFAR-10's archive, 170,498,071 bytes as distributed (cs.toronto.edu/~kriz/cifar.html)
    assert 170_498_071 < DATASETS["cifar10"].files[0].max_bytes < 250_000_000


def test_a_full_disk_is_reported_at_once_with_the_path(
    served: tuple[Server, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, www = served
    (www / "x").write_bytes(b"abc")
    import cnnzoo.data.download as download

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download.os, "replace", full)
    urls = (server.url + "x", server.url + "x")
    remote = RemoteFile("x", _md5(b"abc"), urls)
    with pytest.raises(OSError) as info:
        download_files([remote], tmp_path / "d", stream=None)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "d" / "x")
    assert not isinstance(info.value, DownloadError)
    assert server.requests == ["/x"]  # the second source was not tried: it would not help
    assert list((tmp_path / "d").iterdir()) == []


_SIGTERM_CHILD = """
import sys
from cnnzoo.data import RemoteFile, download_files
remote = RemoteFile("x", "0" * 32, (sys.argv[1],), max_bytes=10**6)
download_files([remote], sys.argv[2], stream=None, timeout=30, deadline=120)
"""


def test_sigterm_mid_download_removes_the_part_file(hostile_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", _SIGTERM_CHILD, hostile_url + "trickle", str(tmp_path)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(1200):  # until the temporary file exists (the import takes a while)
            if any(tmp_path.glob(".x.*.part")) or child.poll() is not None:
                break
            time.sleep(0.05)
        assert any(tmp_path.glob(".x.*.part")), "the download never started"
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 143 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
