"""Files on disk for the format readers and writers: opening or reading a whole file with one
clear error per failure, naming what a file obviously is from its first bytes, and atomic writes
(a temporary file beside the target, renamed over it).

What it owns: no message formats; every writer of the package (caffemodels, means, LMDB side
files, solver states, logs) goes through :func:`atomic_writer`, every binary reader opens its
file through :func:`open_binary`.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from .errors import CaffeFormatError


def open_binary(path, expected: str = "a binary protobuf file"):
    """``open(path, "rb")`` with one clear error naming the file (missing, a folder, unreadable);
    ``expected`` says what the folder should have been."""
    try:
        return open(Path(path), "rb")
    except FileNotFoundError:
        raise CaffeFormatError(path, "file not found") from None
    except IsADirectoryError:
        raise CaffeFormatError(path, f"is a directory, expected {expected}") from None
    except OSError as exc:
        raise CaffeFormatError(path, f"cannot read: {exc.strerror}") from None


def read_binary(path, expected: str = "a binary protobuf file") -> bytes:
    """The whole file's bytes (errors as :func:`open_binary`)."""
    with open_binary(path, expected) as fh:
        try:
            return fh.read()
        except OSError as exc:
            raise CaffeFormatError(path, f"cannot read: {exc.strerror}") from None


_MAGIC = {b"\xff\xd8\xff": "a JPEG image", b"\x89PNG": "a PNG image", b"\x89HDF": "an HDF5 file",
          b"PK\x03\x04": "a zip archive (an .npz or a PyTorch checkpoint?)", b"\x1f\x8b": "gzip data",
          b"\x93NUMPY": "a NumPy .npy file", b"GIF8": "a GIF image"}


def describe_magic(head: bytes) -> str | None:
    """What a file is, from its first bytes, when it is obviously not protobuf (else None)."""
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            return what
    stripped = head.lstrip()
    if stripped.startswith((b"name", b"layer", b"input", b"#", b"net", b"base_lr", b"train_net")):
        return "a text prototxt"
    return None


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (/proc), else by the
    set-and-restore idiom."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_writer(path):
    """Open a temporary file beside ``path`` for binary writing; rename it over ``path`` on success.

    On any error the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; a file written in place would get 0666 & ~umask (0644 under
        # umask 022), so shared output folders stay readable by others
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    with atomic_writer(path) as fh:
        fh.write(data)
