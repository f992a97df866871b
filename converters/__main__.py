"""``python -m converters <command> ...`` (installed as ``caffe-convert <command> ...``): the
command-line entry point.

What it owns: discovering the command modules in ``converters/cli/`` (see its ``__init__`` for
the module contract), building the argparse parser, and turning user errors into one line on
stderr with exit code 2.  User errors are :class:`~converters.formats.CaffeFormatError`, any
other ``ValueError`` *subclass* (the modules raise them on purpose, e.g.
:class:`converters.cli.UserError`) and OS errors about a file (missing, unreadable).  A plain
``ValueError`` or any other exception is a bug and keeps its traceback.  Set
``CONVERTERS_DEBUG=1`` (or pass ``--debug``) to see the traceback of user errors too.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from types import ModuleType

from converters import errors

SCRIPT = "caffe-convert"          # the console script of setup.py
PROG = "python -m converters"


def prog_name() -> str:
    """The name the user typed: ``caffe-convert`` when run as the console script, else
    ``python -m converters`` (usage lines and error lines carry it)."""
    return SCRIPT if os.path.basename(sys.argv[0] or "").startswith(SCRIPT) else PROG
_REQUIRED = ("NAME", "HELP", "add_arguments", "run")


class _Unavailable:
    """Stands in for a command module that failed to import."""

    def __init__(self, name: str, exc: BaseException):
        self.NAME, self.exc = name, exc
        self.HELP = f"(unavailable: {type(exc).__name__}: {exc})"

    def add_arguments(self, parser):
        parser.add_argument("rest", nargs=argparse.REMAINDER)

    def run(self, args) -> int:
        print(f"{prog_name()} {self.NAME}: command unavailable: {type(self.exc).__name__}: {self.exc}",
              file=sys.stderr)
        return 1


def _load(modname: str):
    try:
        module = importlib.import_module(f"converters.cli.{modname}")
    except Exception as exc:  # a broken command must not take the other commands down
        return _Unavailable(modname, exc)
    if all(hasattr(module, attr) for attr in _REQUIRED):
        return module
    return None


def discover(only: str | None = None) -> dict[str, ModuleType]:
    """Command name -> module for every command module in ``converters/cli``.

    With ``only``, the module of that file name is tried first (so ``inspect`` does not import
    every other command); all modules are loaded when it is not a command of that name.
    """
    from . import cli

    names = sorted(m.name for m in pkgutil.iter_modules(cli.__path__) if not m.name.startswith("_"))
    if only is not None and only in names:
        module = _load(only)
        if module is not None and module.NAME == only:
            return {only: module}
    commands = {}
    for name in names:
        module = _load(name)
        if module is not None:
            commands[module.NAME] = module
    return commands


def build_parser(commands: dict) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog_name(), description="Caffe artefacts -> PyTorch with Caffe's exact numerics.")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks for input errors (also CONVERTERS_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in sorted(commands):
        module = commands[name]
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    commands = discover(only=first)
    parser = build_parser(commands)
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("CONVERTERS_DEBUG", "") not in ("", "0")
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog_name()} {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # output piped into e.g. `head`: not an error
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception as exc:
        if debug or not errors.is_input_error(exc):
            raise
        return errors.report(f"{prog_name()} {args.command}", exc)


if __name__ == "__main__":
    sys.exit(main())
