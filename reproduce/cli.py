"""Shared piece of ``run.py``'s command line: option groups contributed by the mode modules."""
from __future__ import annotations


class OptionGroup:
    """An argparse group that adds only the options the parser does not have yet.

    ``run.py`` owns the common options (--table, --weights, --out, --device ...); the modes
    (predict, train, studies) add theirs through this, so an option defined twice is reused, not
    an argparse conflict, and each module can also build a stand-alone parser with the same code.
    """

    def __init__(self, parser, title: str):
        self._have = set(parser._option_string_actions)  # noqa: SLF001 - argparse has no public query
        self._group = parser.add_argument_group(title)

    def add_argument(self, *flags, **kw):
        if not any(f in self._have for f in flags):
            self._group.add_argument(*flags, **kw)
