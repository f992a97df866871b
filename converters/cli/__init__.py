"""Subcommands of ``python -m converters``, one module each, discovered by ``converters.__main__``.

A command module defines ``NAME`` (the subcommand), ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int`` (the exit code).  Bad input is reported by raising
:class:`converters.errors.InputError` (``CaffeFormatError``, :class:`UserError` and every
other user-input error derive from it) or an ``OSError`` naming a file: the entry point prints it as
one line on stderr and exits with 2, no traceback.  Modules whose name starts with ``_`` are helpers, not commands.
"""

from converters.errors import InputError


class UserError(ValueError, InputError):
    """A problem with the user's input that is not a Caffe file error (bad option values...)."""
