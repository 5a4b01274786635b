"""download=True against a loopback HTTP server that each test starts itself: good downloads,
corrupted and truncated ones (rejected, nothing left behind), HTTP errors, mirrors, files
already present, and safe, atomic archive extraction. No test reaches beyond 127.0.0.1."""
import gzip
import hashlib
import http.server
import io
import os
import socket
import struct
import tarfile
import threading

import numpy as np
import pytest

from minires.data.datasets import CIFAR10, MIRROR_VARIABLE, MNIST, DownloadError, FashionMNIST
from minires.data.datasets.download import extract_tar

MNIST_NAMES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
CIFAR_MEMBERS = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin", "batches.meta.txt"]


# ---------------------------------------------------------------------------- the files served

def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def idx_gz(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.tobytes())


def mnist_files(seed=0) -> dict:
    """file name -> gzipped IDX bytes: 4 training and 2 test images of 28x28, with labels."""
    rng = np.random.default_rng(seed)
    files = {}
    for prefix, n in (("train", 4), ("t10k", 2)):
        files[f"{prefix}-images-idx3-ubyte.gz"] = idx_gz(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        files[f"{prefix}-labels-idx1-ubyte.gz"] = idx_gz(rng.integers(0, 10, n, dtype=np.uint8))
    return files


def tar_gz(members: list) -> bytes:
    """A .tar.gz of (TarInfo, bytes or None) pairs."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def cifar_archive(seed=0, leave_out=()) -> bytes:
    """A cifar-10-binary.tar.gz with one image per batch file."""
    rng = np.random.default_rng(seed)
    folder = tarfile.TarInfo("cifar-10-batches-bin")
    folder.type = tarfile.DIRTYPE
    members = [(folder, None)]
    for name in CIFAR_MEMBERS:
        if name in leave_out:
            continue
        data = (b"airplane\nautomobile\n" if name.endswith(".txt") else
                bytes([int(rng.integers(0, 10))]) + rng.integers(0, 256, 3072, dtype=np.uint8).tobytes())
        members.append((tarfile.TarInfo(f"cifar-10-batches-bin/{name}"), data))
    return tar_gz(members)


# ---------------------------------------------------------------------------- the server

class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.routes[path] = (body, mode)``; mode "ok", or "truncate": announce the whole
    length, send half, hang up. Any other path is a 404. Every request is recorded in ``hits``."""

    def do_GET(self):
        self.server.hits.append(self.path)
        if self.path not in self.server.routes:
            self.send_error(404, "no such file")
            return
        body, mode = self.server.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:len(body) // 2] if mode == "truncate" else body)
        self.close_connection = True

    def log_message(self, *args):            # keep the test output clean
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.hits = {}, []
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """No mirror from the environment, no proxies, and a connection anywhere but 127.0.0.1 fails the test."""
    for name in (MIRROR_VARIABLE, "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    connect = socket.create_connection

    def guarded(address, *args, **kwargs):
        assert address[0] in ("127.0.0.1", "localhost"), f"a test tried to reach {address}"
        return connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)


@pytest.fixture
def official_mnist(server, monkeypatch):
    """MNIST's resource table pointed at /official/ on the server, which serves good files."""
    files = mnist_files()
    monkeypatch.setattr(MNIST, "mirrors", [f"{server.base}/official/"])
    monkeypatch.setattr(MNIST, "resources", [(name, md5(files[name])) for name in MNIST_NAMES])
    for name, body in files.items():
        server.routes[f"/official/{name}"] = (body, "ok")
    return files


@pytest.fixture
def official_cifar(server, monkeypatch):
    archive = cifar_archive()
    monkeypatch.setattr(CIFAR10, "mirrors", [f"{server.base}/kriz/"])
    monkeypatch.setattr(CIFAR10, "archive", ("cifar-10-binary.tar.gz", md5(archive)))
    server.routes["/kriz/cifar-10-binary.tar.gz"] = (archive, "ok")
    return archive


def files_under(root) -> list:
    """Every file below ``root``, as sorted relative paths (temporary files included)."""
    return sorted(os.path.relpath(os.path.join(folder, name), root)
                  for folder, _, names in os.walk(root) for name in names)


# ---------------------------------------------------------------------------- MNIST

def test_mnist_download_fetches_checks_and_reads(tmp_path, server, official_mnist):
    data = MNIST(tmp_path, download=True)
    assert sorted(server.hits) == sorted(f"/official/{name}" for name in MNIST_NAMES)
    assert files_under(tmp_path) == sorted(os.path.join("MNIST", "raw", name) for name in MNIST_NAMES)
    for name in MNIST_NAMES:
        assert (tmp_path / "MNIST" / "raw" / name).read_bytes() == official_mnist[name]
    assert data.images.shape == (4, 28, 28, 1) and len(MNIST(tmp_path, train=False)) == 2


def test_files_already_present_are_not_downloaded_again(tmp_path, server, official_mnist):
    MNIST(tmp_path, download=True)
    server.hits.clear()
    MNIST(tmp_path, download=True)
    MNIST(tmp_path, train=False, download=True)
    assert server.hits == []


def test_unpacked_files_as_torchvision_leaves_them_count_as_present(tmp_path, server, official_mnist):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, body in official_mnist.items():
        (raw / name[:-3]).write_bytes(gzip.decompress(body))
    assert len(MNIST(tmp_path, download=True)) == 4 and server.hits == []


def test_a_stale_archive_with_another_checksum_is_replaced(tmp_path, server, official_mnist):
    MNIST(tmp_path, download=True)
    stale = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    stale.write_bytes(idx_gz(np.zeros(2, np.uint8)))
    server.hits.clear()
    MNIST(tmp_path, download=True)
    assert server.hits == ["/official/t10k-labels-idx1-ubyte.gz"]
    assert stale.read_bytes() == official_mnist["t10k-labels-idx1-ubyte.gz"]


def _corrupt(body: bytes) -> bytes:
    return body[:20] + bytes([body[20] ^ 0xFF]) + body[21:]


@pytest.mark.parametrize("failure, message", [
    ("corrupted", r"has MD5 [0-9a-f]{32}, not the published [0-9a-f]{32}"),
    ("truncated", r"cut short: \d+ of the \d+ bytes"),
    ("missing", r"HTTP 404"),
])
def test_a_failed_download_is_rejected_and_leaves_nothing(tmp_path, server, official_mnist, failure, message):
    path = "/official/train-images-idx3-ubyte.gz"
    body = official_mnist["train-images-idx3-ubyte.gz"]
    if failure == "missing":
        del server.routes[path]
    else:
        server.routes[path] = (_corrupt(body), "ok") if failure == "corrupted" else (body, "truncate")
    with pytest.raises(DownloadError, match=message) as caught:
        MNIST(tmp_path, download=True)
    assert f"{server.base}{path}" in str(caught.value) and MIRROR_VARIABLE in str(caught.value)
    assert files_under(tmp_path) == []


def test_a_failure_midway_keeps_the_whole_files_and_no_partial_one(tmp_path, server, official_mnist):
    body = official_mnist["t10k-images-idx3-ubyte.gz"]
    server.routes["/official/t10k-images-idx3-ubyte.gz"] = (body, "truncate")
    with pytest.raises(DownloadError, match="cut short"):
        MNIST(tmp_path, download=True)
    whole = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert files_under(tmp_path) == [os.path.join("MNIST", "raw", name) for name in whole]
    server.routes["/official/t10k-images-idx3-ubyte.gz"] = (body, "ok")
    server.hits.clear()
    assert len(MNIST(tmp_path, train=False, download=True)) == 2                 # a retry fetches only the rest
    assert sorted(server.hits) == ["/official/t10k-images-idx3-ubyte.gz", "/official/t10k-labels-idx1-ubyte.gz"]


def test_the_next_official_server_is_tried_after_a_failure(tmp_path, server, official_mnist, monkeypatch):
    monkeypatch.setattr(MNIST, "mirrors", [f"{server.base}/gone/", f"{server.base}/official/"])
    assert len(MNIST(tmp_path, download=True)) == 4
    assert server.hits[:2] == ["/gone/train-images-idx3-ubyte.gz", "/official/train-images-idx3-ubyte.gz"]


def test_an_unreachable_server_is_a_clear_error(tmp_path, monkeypatch):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()                                                 # nothing listens there now
    monkeypatch.setattr(MNIST, "mirrors", [f"http://127.0.0.1:{port}/mnist/"])
    with pytest.raises(DownloadError, match=rf"127.0.0.1:{port}/mnist/train-images-idx3-ubyte.gz: could not connect"):
        MNIST(tmp_path, download=True)
    assert files_under(tmp_path) == []


def _serve_mirror(server, files, folder="MNIST"):
    for name, body in files.items():
        server.routes[f"/mirror/{folder}/{name}"] = (body, "ok")


def test_a_mirror_argument_replaces_the_official_servers(tmp_path, server, official_mnist):
    _serve_mirror(server, official_mnist)
    assert len(MNIST(tmp_path, download=True, mirror=f"{server.base}/mirror")) == 4
    assert sorted(server.hits) == sorted(f"/mirror/MNIST/{name}" for name in MNIST_NAMES)


def test_the_mirror_environment_variable_is_read_at_construction(tmp_path, server, official_mnist, monkeypatch):
    _serve_mirror(server, official_mnist)
    monkeypatch.setenv(MIRROR_VARIABLE, f"{server.base}/mirror/")
    data = MNIST(tmp_path, download=True)
    assert data.mirror == f"{server.base}/mirror/" and all(hit.startswith("/mirror/MNIST/") for hit in server.hits)


def test_a_mirror_failure_names_the_mirror_url(tmp_path, server, official_mnist):
    with pytest.raises(DownloadError, match=r"/mirror/MNIST/train-images-idx3-ubyte.gz: the server answered HTTP 404"):
        MNIST(tmp_path, download=True, mirror=f"{server.base}/mirror")
    assert not any(hit.startswith("/official/") for hit in server.hits)


def test_a_file_url_mirror_works_without_a_server(tmp_path, official_mnist):
    mirror = tmp_path / "share"
    (mirror / "MNIST").mkdir(parents=True)
    for name, body in official_mnist.items():
        (mirror / "MNIST" / name).write_bytes(body)
    assert len(MNIST(tmp_path / "data", download=True, mirror=mirror.as_uri())) == 4


def test_fashion_mnist_downloads_into_its_own_folder(tmp_path, server, monkeypatch):
    files = mnist_files(seed=5)
    monkeypatch.setattr(FashionMNIST, "resources", [(name, md5(files[name])) for name in MNIST_NAMES])
    _serve_mirror(server, files, folder="FashionMNIST")
    data = FashionMNIST(tmp_path, download=True, mirror=f"{server.base}/mirror")
    assert data.classes[0] == "T-shirt/top"
    assert files_under(tmp_path) == sorted(os.path.join("FashionMNIST", "raw", name) for name in MNIST_NAMES)


# ---------------------------------------------------------------------------- CIFAR-10

def test_cifar_download_extracts_the_binary_batches(tmp_path, server, official_cifar):
    train = CIFAR10(tmp_path, download=True)
    assert server.hits == ["/kriz/cifar-10-binary.tar.gz"]
    assert files_under(tmp_path) == sorted(["cifar-10-binary.tar.gz"] +
                                           [os.path.join("cifar-10-batches-bin", name) for name in CIFAR_MEMBERS])
    assert train.images.shape == (5, 32, 32, 3) and len(CIFAR10(tmp_path, train=False, download=True)) == 1
    assert server.hits == ["/kriz/cifar-10-binary.tar.gz"]                     # the second time: nothing fetched


def test_cifar_archive_already_present_is_extracted_without_download(tmp_path, server, official_cifar):
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(official_cifar)
    assert len(CIFAR10(tmp_path, download=True)) == 5 and server.hits == []


@pytest.mark.parametrize("mode", ["corrupted", "truncated"])
def test_cifar_bad_download_leaves_nothing(tmp_path, server, official_cifar, mode):
    route = "/kriz/cifar-10-binary.tar.gz"
    server.routes[route] = (_corrupt(official_cifar), "ok") if mode == "corrupted" else (official_cifar, "truncate")
    with pytest.raises(DownloadError, match=f"{server.base}{route}"):
        CIFAR10(tmp_path, download=True)
    assert files_under(tmp_path) == []


def test_cifar_mirror(tmp_path, server, official_cifar):
    server.routes["/mirror/CIFAR10/cifar-10-binary.tar.gz"] = (official_cifar, "ok")
    assert len(CIFAR10(tmp_path, download=True, mirror=f"{server.base}/mirror")) == 5
    assert server.hits == ["/mirror/CIFAR10/cifar-10-binary.tar.gz"]


def test_cifar_incomplete_folder_is_not_overwritten(tmp_path, server, official_cifar):
    (tmp_path / "cifar-10-batches-bin").mkdir()
    (tmp_path / "cifar-10-batches-bin" / "data_batch_1.bin").write_bytes(b"\x00" * 3073)
    with pytest.raises(FileNotFoundError, match="incomplete or damaged.*delete the folder"):
        CIFAR10(tmp_path, download=True)
    assert server.hits == []


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


@pytest.mark.parametrize("member, message", [
    ((tarfile.TarInfo("cifar-10-batches-bin/../../evil.bin"), b"x"), "unsafe path"),
    ((tarfile.TarInfo("/tmp/evil.bin"), b"x"), "unsafe path"),
    (_link("cifar-10-batches-bin/data_batch_1.bin", "/etc/passwd"), "a link or a special file"),
    (_link("cifar-10-batches-bin/data_batch_2.bin", "cifar-10-batches-bin/x", tarfile.LNKTYPE), "a link"),
], ids=["dot-dot", "absolute", "symlink", "hardlink"])
def test_unsafe_archives_are_refused_and_nothing_is_extracted(tmp_path, server, monkeypatch, member, message):
    archive = tar_gz([(tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin"), b"\x00" * 3073), member])
    monkeypatch.setattr(CIFAR10, "mirrors", [f"{server.base}/kriz/"])
    monkeypatch.setattr(CIFAR10, "archive", ("cifar-10-binary.tar.gz", md5(archive)))
    server.routes["/kriz/cifar-10-binary.tar.gz"] = (archive, "ok")
    root = tmp_path / "deep" / "root"
    with pytest.raises(ValueError, match=message):
        CIFAR10(root, download=True)
    assert files_under(tmp_path) == [os.path.join("deep", "root", "cifar-10-binary.tar.gz")]


def test_an_archive_missing_a_batch_leaves_no_folder(tmp_path, server, monkeypatch):
    archive = cifar_archive(leave_out=("data_batch_4.bin",))
    monkeypatch.setattr(CIFAR10, "archive", ("cifar-10-binary.tar.gz", md5(archive)))
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(archive)
    with pytest.raises(ValueError, match="does not hold cifar-10-batches-bin/data_batch_4.bin"):
        CIFAR10(tmp_path, download=True)
    assert files_under(tmp_path) == ["cifar-10-binary.tar.gz"]


def test_extract_tar_refuses_an_existing_destination_and_damaged_archives(tmp_path):
    (tmp_path / "a.tar.gz").write_bytes(cifar_archive())
    (tmp_path / "cifar-10-batches-bin").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        extract_tar(tmp_path / "a.tar.gz", tmp_path, "cifar-10-batches-bin")
    (tmp_path / "cifar-10-batches-bin").rmdir()
    (tmp_path / "a.tar.gz").write_bytes(cifar_archive()[:300])
    with pytest.raises(ValueError, match="not a readable tar archive"):
        extract_tar(tmp_path / "a.tar.gz", tmp_path, "cifar-10-batches-bin")
    assert files_under(tmp_path) == ["a.tar.gz"] and os.listdir(tmp_path) == ["a.tar.gz"]
