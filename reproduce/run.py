#!/usr/bin/env python
"""The command line of the reproduction: score the paper's models (Tables 2-5), train them, predict
and explain photos, the offline demo and the follow-up studies.

    python reproduce/run.py MODE [options]        MODE: table list fetch demo predict explain train study
    python reproduce/run.py --table 2 --row m,w --lmdb DATA --weights MODELS    (the flag style, as before)
    python reproduce/run.py MODE --help           a mode's options

What it owns: the entry point only.  The modes live in their own modules (:mod:`reproduce.modes`
is the registry: each mode's parser holds only that mode's options); this parses the command
line with the chosen mode's parser and runs it, printing a user error as one line with exit 2.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from converters.errors import InputError, is_input_error, report  # noqa: E402
from reproduce import modes  # noqa: E402
from reproduce.options import UsageError, parse_folds  # noqa: E402,F401 - run.py's names, as before

PROG = modes.PROG
OVERVIEW = modes.overview()


def build_parser() -> modes.DispatchParser:
    """A parser of whole run.py command lines: ``parse_args(argv)`` picks the mode as :func:`main`
    does and returns that mode's namespace (``args.mode`` names it)."""
    return modes.DispatchParser(PROG)


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    argv = list(argv)
    if not argv:
        # no mode chosen: the overview of the modes on stdout, and the usual one-line error (exit 2:
        # nothing was done)
        print(OVERVIEW)
        print(f"{PROG}: error: one of --table, --list or --fetch-assets (or another mode above) is required",
              file=sys.stderr)
        return 2
    if argv in (["-h"], ["--help"]):   # the modes; each mode's options: run.py MODE --help
        print(OVERVIEW)
        return 0
    try:
        mode, rest = modes.detect(argv)
        args = modes.build_parser(mode, PROG).parse_args(rest)
    except InputError as exc:
        return report(PROG, exc)
    except SystemExit as exc:   # --help
        return int(exc.code or 0)
    try:
        return modes.MODES[mode].module.run(args)
    except Exception as exc:  # noqa: BLE001 - a user error a mode let through is still one line
        if is_input_error(exc):
            return report(PROG, exc)
        raise


if __name__ == "__main__":
    sys.exit(main())
