"""Fetching a dataset's files: checked, atomic downloads and safe archive extraction.

A download never leaves half a file behind. The bytes go into a temporary file beside the
destination (``minires.io.atomic_file``); only when the transfer is complete (as many bytes as
the server announced) and its MD5 checksum is the published one is the file flushed to disk
and renamed over the destination, which is atomic within a folder. Whatever goes wrong before
that (an HTTP error, a connection that drops, corrupted bytes), the temporary file is removed
and a ``DownloadError`` names the URL and what to do.

Archives are extracted the same way: every member goes into a temporary folder, and that
folder is renamed into place once all of it is out. Members with an absolute path, a ``..``
component, or a type other than a plain file or folder (links, devices) are refused: a
crafted archive cannot write outside the folder it is extracted into.

Mirrors, for machines that cannot reach the official servers: a mirror is a base URL under
which each dataset's files sit in a folder named after the dataset class, as in
``<mirror>/MNIST/train-images-idx3-ubyte.gz`` or ``<mirror>/CIFAR10/cifar-10-binary.tar.gz``.
Pass it as ``mirror=`` to a dataset, or set the ``MINIRES_DATA_MIRROR`` environment variable
(read once, when the dataset is constructed). ``file://`` URLs work too. Files from a mirror
are checked against the same official checksums.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import secrets
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator, Sequence
from pathlib import PurePosixPath
from typing import Optional, Union

from minires.io import atomic_file

PathLike = Union[str, "os.PathLike[str]"]

MIRROR_VARIABLE = "MINIRES_DATA_MIRROR"
_CHUNK = 1024 * 1024          # bytes per read while downloading or hashing
_TIMEOUT = 60.0               # seconds without an answer before a download gives up


class DownloadError(RuntimeError):
    """A file could not be fetched, or what came was not the published file."""


# ---------------------------------------------------------------------------- where files come from

def mirror_from_environment() -> Optional[str]:
    """The mirror base URL in ``MINIRES_DATA_MIRROR``, or None when it is unset or empty."""
    return os.environ.get(MIRROR_VARIABLE) or None


def candidate_urls(filename: str, official: Sequence[str], folder: str, mirror: Optional[str]) -> list:
    """The URLs to try for ``filename``, in order.

    With a mirror, only ``<mirror>/<folder>/<filename>`` (behind a firewall the official servers
    would only time out); without one, each official base URL in turn.
    """
    if mirror:
        return [f"{mirror.rstrip('/')}/{folder}/{filename}"]
    return [f"{base.rstrip('/')}/{filename}" for base in official]


# ---------------------------------------------------------------------------- checksums

def md5_of(path: PathLike) -> str:
    """The MD5 checksum of a file, as 32 lowercase hex digits."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def has_md5(path: PathLike, md5: str) -> bool:
    """True when ``path`` is a file whose checksum is ``md5``."""
    return os.path.isfile(path) and md5_of(path) == md5.lower()


# ---------------------------------------------------------------------------- atomic files

def fetch(urls: Sequence[str], path: PathLike, md5: str) -> None:
    """Fetch the file published with checksum ``md5`` into ``path``, trying each URL in turn.

    The first URL that delivers the whole file with the right checksum wins. When none does,
    the ``DownloadError`` lists what happened at each one, and ``path`` is untouched.
    """
    failures = []
    for url in urls:
        try:
            _download_one(url, path, md5)
            return
        except DownloadError as error:
            failures.append(str(error))
    tried = "\n  ".join(failures)
    raise DownloadError(f"could not download {os.path.basename(os.fspath(path))}:\n  {tried}\n"
                        f"Check the connection, or set a mirror (mirror=... or the {MIRROR_VARIABLE} "
                        f"environment variable), or fetch the file yourself into {os.fspath(path)!r}")


def _download_one(url: str, path: PathLike, md5: str) -> None:
    """One attempt: stream ``url`` into an atomic file, checking its length and its MD5."""
    print(f"Downloading {url}", file=sys.stderr)
    try:
        response = urllib.request.urlopen(url, timeout=_TIMEOUT)
    except urllib.error.HTTPError as error:
        raise DownloadError(f"{url}: the server answered HTTP {error.code} ({error.reason})") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"{url}: could not connect ({reason})") from None
    with response:
        announced = response.headers.get("Content-Length")
        expected = int(announced) if announced is not None and announced.isdigit() else None
        digest = hashlib.md5(usedforsecurity=False)
        received = 0
        try:
            with atomic_file(path) as f, _progress(expected, os.path.basename(os.fspath(path))) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    f.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar(len(chunk))
                if expected is not None and received != expected:
                    raise DownloadError(f"{url}: the transfer was cut short: {received} of the {expected} "
                                        f"bytes the server announced arrived; try again")
                if digest.hexdigest() != md5.lower():
                    raise DownloadError(f"{url}: the file that arrived ({received} bytes) has MD5 "
                                        f"{digest.hexdigest()}, not the published {md5}: it is corrupted "
                                        f"or not the right file; try again or use another mirror")
        except (OSError, ValueError) as error:   # a connection reset, http.client.IncompleteRead, ...
            raise DownloadError(f"{url}: the transfer failed after {received} bytes ({error!r}); "
                                f"try again") from None


@contextlib.contextmanager
def _progress(total: Optional[int], label: str) -> Iterator:
    """A function to call with each chunk's size: a tqdm bar when tqdm is installed and the
    output is a terminal, otherwise nothing."""
    try:
        from tqdm import tqdm
    except ImportError:
        yield lambda n: None
        return
    with tqdm(total=total, desc=label, unit="B", unit_scale=True, leave=False, disable=None) as bar:
        yield bar.update


# ---------------------------------------------------------------------------- archives

def extract_tar(archive: PathLike, into: PathLike, folder: str, required: Sequence[str] = ()) -> None:
    """Extract the folder ``folder`` of a tar archive (``.tar``, ``.tar.gz``) into ``into``.

    Only members inside ``folder/`` are extracted; each must be a plain file or a folder with a
    relative path free of ``..``. Everything goes into a temporary folder first, which is renamed
    to ``into/folder`` once the whole of it is out and holds each of the ``required`` files, so
    ``into/folder`` either appears complete or not at all. ``into/folder`` must not exist yet.
    """
    archive_name = os.fspath(archive)
    destination = os.path.join(os.fspath(into), folder)
    if os.path.exists(destination):
        raise FileExistsError(f"cannot extract {archive_name!r} into {destination!r}: it already exists; "
                              f"remove it first if it is incomplete")
    temporary = os.path.join(os.fspath(into), f".{folder}.{secrets.token_hex(6)}.part")
    try:
        os.makedirs(os.path.join(temporary, folder))
        with tarfile.open(archive_name, "r:*") as tar:
            for member in tar:
                relative = _checked_member(member, archive_name)
                if relative.parts[0] != folder:
                    continue
                target = os.path.join(temporary, *relative.parts)
                if member.isdir():
                    os.makedirs(target, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                source = tar.extractfile(member)
                with source, open(target, "xb") as f:
                    shutil.copyfileobj(source, f, _CHUNK)
        absent = [name for name in required if not os.path.isfile(os.path.join(temporary, folder, name))]
        if absent:
            raise ValueError(f"{archive_name!r} does not hold {', '.join(f'{folder}/{name}' for name in absent)}: "
                             f"it is not the archive expected; delete it and download it again")
        os.replace(os.path.join(temporary, folder), destination)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(f"{archive_name!r} is not a readable tar archive ({error}); it may be truncated: "
                         f"delete it and download it again") from None
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _checked_member(member: tarfile.TarInfo, archive_name: str) -> PurePosixPath:
    """The member's path, after refusing anything that could write outside the target folder."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"{archive_name!r} holds a member with an unsafe path, {member.name!r}: refusing to "
                         f"extract it (an archive may only hold relative paths without '..')")
    if not (member.isfile() or member.isdir()):
        raise ValueError(f"{archive_name!r} holds {member.name!r}, which is a link or a special file, not a "
                         f"plain file or folder: refusing to extract it")
    return path
