"""Files on disk for the format readers and writers: reading a whole binary file with one clear
error per failure, and atomic writes (a temporary file beside the target, renamed over it).

What it owns: nothing Caffe-specific; every writer of the package (caffemodels, means, LMDB
side files, solver states) goes through :func:`atomic_writer`.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from .errors import CaffeFormatError


def read_binary(path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CaffeFormatError(path, "file not found") from None
    except IsADirectoryError:
        raise CaffeFormatError(path, "is a directory, expected a binary protobuf file") from None
    except OSError as exc:
        raise CaffeFormatError(path, f"cannot read: {exc.strerror}") from None


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
