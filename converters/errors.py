"""The package's one user-input error type, and how a command line reports it.

What it owns: :class:`InputError`, the common base of every error whose cause is something the
user gave (a file, an option value, an input that is missing) rather than a bug in this package.
The format layer's ``CaffeFormatError``, the converter's ``ConversionError``, the solver's and the
fillers' setting errors, ``reproduce``'s option, asset and fetch errors ... all derive from it, next
to the built-in base they always had (``ValueError`` or ``RuntimeError``), so existing ``except``
clauses keep working.

Every command line (``python -m converters``, ``reproduce/run.py`` and its modes) reports an
``InputError`` (or an ``OSError`` that names a file) as one line, ``PROG: error: MESSAGE``, on
stderr and exits with 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys

EXIT_INPUT = 2  # exit code of a command line refused for its input (argparse uses 2 too)


class InputError(Exception):
    """A problem with the user's input; ``str(err)`` names the file, layer, line or option."""


def is_input_error(exc: BaseException) -> bool:
    """True for the errors a command line turns into one line and exit code 2."""
    if isinstance(exc, InputError):
        return True
    return isinstance(exc, OSError) and getattr(exc, "filename", None) is not None


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on a single line (an OSError as ``file: reason``)."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def report(prog: str, exc: BaseException, stream=None) -> int:
    """Print ``prog: error: message`` for an input error; return the exit code (2)."""
    print(f"{prog}: error: {one_line(exc)}", file=stream or sys.stderr)
    return EXIT_INPUT
