"""The one error type of the format layer: every message names the file (and line or layer)."""
from __future__ import annotations
from converters.errors import InputError


class CaffeFormatError(ValueError, InputError):
    """A Caffe artefact could not be read or written.

    ``str(err)`` is a single line that starts with the file path, followed by
    ``:line:column`` for text files where known, or ``layer 'name'``.
    """

    def __init__(self, path, message: str, *, line: int | None = None, column: int | None = None,
                 layer: str | None = None):
        self.path = str(path) if path is not None else None
        self.line, self.column, self.layer, self.reason = line, column, layer, message
        where = self.path or "<input>"
        if line is not None:
            where += f":{line}" + (f":{column}" if column is not None else "")
        if layer is not None:
            where += f": layer '{layer}'"
        super().__init__(f"{where}: {message}")
