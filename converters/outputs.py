"""Checks on where a command will write, made before any work starts.

What it owns: refusing an output path that cannot be written (an existing folder where a file is
wanted, a file where a folder is wanted, a parent that is a file, a folder without write
permission) with one line naming the path, so a long run is never lost at its last step.
"""
from __future__ import annotations

import os
from pathlib import Path
from converters.errors import InputError


class OutputPathError(ValueError, InputError):
    """An output path that cannot be used; ``str()`` starts with the path."""

    def __init__(self, path, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {message}")


def _writable_ancestor(path: Path, original) -> None:
    """The nearest existing ancestor of ``path`` must be a writable folder (``mkdir -p`` would
    create the rest)."""
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(original, f"cannot create it: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise OutputPathError(original, f"cannot write there: no write permission in {parent}")
            return


def check_output_file(path, what: str = "output file") -> Path:
    """``path`` can be written as a file (created, or replaced when it is a file)."""
    p = Path(path)
    if p.is_dir():
        raise OutputPathError(path, f"is a folder; the {what} needs a file name "
                                    f"(e.g. {p / 'model.pt'})" if what == "output file" else
                                    f"is a folder; the {what} needs a file name")
    if p.exists() and not os.access(p, os.W_OK) and not os.access(p.parent, os.W_OK):
        raise OutputPathError(path, "cannot write there: no write permission")
    _writable_ancestor(p.parent if str(p.parent) else Path("."), path)
    return p


def check_output_dir(path, what: str = "output folder") -> Path:
    """``path`` is (or can be made) a folder we can write into."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputPathError(path, f"is a file; the {what} must be a folder")
    _writable_ancestor(p, path)
    return p
