"""``run.py``'s modes: which module runs which mode, how the mode is read off a command line, and
each mode's own parser.

What it owns: the registry :data:`MODES` (mode name -> module; every mode module exposes
``add_arguments(parser)`` and ``run(args) -> int``), :func:`detect` (the mode of a command line
in either style: a subcommand word, ``run.py train --table 2 ...``, or today's mode flag,
``run.py --table 2 --train ...``), :func:`build_parser` (a mode's parser: only the options that
mode declares, so ``--init`` is a folder for ``train`` and a file for ``study``), and the error
for an option that belongs to another mode (one line naming the modes it belongs to, exit 2).

Both styles give the same namespace: the subcommand word is turned into the mode's flag
(``list`` -> ``--list``, ``predict a.jpg`` -> ``--predict a.jpg``, ``study mtl2022`` -> ``--study
mtl2022``) before the mode's parser reads the rest; ``args.mode`` names the mode.
"""
from __future__ import annotations

import argparse
import importlib

from reproduce.options import UsageError

PROG = "run.py"
DEFAULT_STUDY = "lapuschkin2017"   # ``--study lapuschkin2017`` = the 2017 tables: the other modes


class Mode:
    """A mode: the module that declares its options and runs it, and its flag (which selects it in
    the flag style and which its subcommand word stands for; the table mode has none)."""

    def __init__(self, name: str, module: str, flag: str | None, summary: str):
        self.name, self.module_name, self.flag, self.summary = name, module, flag, summary

    @property
    def module(self):
        return importlib.import_module(self.module_name)


# the subcommand words, in the order of run.py's overview; list and fetch are the table mode with
# --list / --fetch-assets (as in the flag style)
MODES = {m.name: m for m in (
    Mode("table", "reproduce.table", None, "score the paper's models (Tables 2-5)"),
    Mode("list", "reproduce.table", "--list", "print every cell of Tables 2-5"),
    Mode("fetch", "reproduce.table", "--fetch-assets", "fetch the upstream prototxts, folds and mean images"),
    Mode("demo", "reproduce.demo", "--demo", "the whole pipeline offline on SYNTHETIC data"),
    Mode("predict", "reproduce.predict", "--predict", "age/gender of photos with a cell's models"),
    Mode("explain", "reproduce.explain_cells", "--explain", "LRP heatmaps of a cell's fold models"),
    Mode("train", "reproduce.train", "--train", "the paper's training runs, then their evaluation"),
    Mode("study", "reproduce.studies", "--study", "the follow-up studies (mtl2022, fusion2022)"),
)}
# the flag style's precedence when a command line has several mode flags (as run.py always had:
# --predict with --explain is a prediction with heatmaps)
FLAG_ORDER = ("demo", "study", "predict", "train", "explain")


class Parser(argparse.ArgumentParser):
    """A mode's parser: errors are :class:`UsageError` (one line, exit 2, printed by the caller);
    an option another mode declares is named as such instead of a bare "unrecognized"."""

    def __init__(self, *a, mode: str | None = None, **kw):
        kw.setdefault("allow_abbrev", False)  # "--demo-iter 5" must be an error, not "--demo-iters 5"
        kw.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*a, **kw)
        self.mode = mode

    def error(self, message):
        raise UsageError(message)

    def parse_args(self, args=None, namespace=None):
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            self.error(unrecognized(extras, self.mode, self.prog))
        return ns


def unrecognized(extras: list[str], mode: str | None, prog: str | None = None) -> str:
    """argparse's "unrecognized arguments" line, plus which modes declare the first option of them."""
    text = f"unrecognized arguments: {' '.join(extras)}"
    for token in extras:
        if not token.startswith("--"):
            continue
        option = token.split("=", 1)[0]
        owners = [m for m in owners_of(option) if m != mode]
        if owners:
            return (f"{text} ({option} is an option of the {', '.join(owners)} mode{'s' if len(owners) > 1 else ''}"
                    f", not of {mode or 'this mode'}; {prog or PROG} --help lists its options)")
        break
    return text


_OWNERS: dict | None = None


def owners_of(option: str) -> list[str]:
    """The modes whose parser has ``option``."""
    global _OWNERS
    if _OWNERS is None:
        owners: dict = {}
        for name in _parser_modes():
            for flag in build_parser(name)._option_string_actions:  # noqa: SLF001 - argparse has no public query
                owners.setdefault(flag, []).append(name)
        _OWNERS = owners
    return _OWNERS.get(option, [])


def _parser_modes() -> list[str]:
    """One mode name per module (list and fetch share the table's parser)."""
    seen, names = set(), []
    for m in MODES.values():
        if m.module_name not in seen:
            seen.add(m.module_name)
            names.append(m.name)
    return names


def build_parser(mode: str, prog: str = PROG) -> Parser:
    """The parser of ``mode``: its module's options only."""
    m = MODES[mode]
    base = next(x for x in MODES.values() if x.module_name == m.module_name)   # list/fetch -> table
    doc = (m.module.__doc__ or "").strip().split("\n\n")[0]
    # run.py's modes are "run.py MODE"; a module's own entry point (python -m reproduce.predict) keeps its name
    parser = Parser(prog=f"{prog} {base.name}" if prog == PROG else prog, description=doc, mode=base.name)
    m.module.add_arguments(parser)
    parser.set_defaults(mode=base.name)
    return parser


def _option_value(argv: list[str], flag: str):
    """The value of ``flag`` (``--flag V`` or ``--flag=V``) in ``argv``, True for a bare flag, else None."""
    for i, tok in enumerate(argv):
        if tok == "--":
            break
        if tok == flag:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            return nxt if nxt is not None and not nxt.startswith("-") else True
        if tok.startswith(flag + "="):
            return tok.split("=", 1)[1]
    return None


def _drop_default_study(argv: list[str]) -> list[str]:
    """``--study lapuschkin2017`` names the 2017 tables, i.e. every mode but ``study``: left out."""
    out, i = [], 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--study" and i + 1 < len(argv) and argv[i + 1] == DEFAULT_STUDY:
            i += 2
            continue
        if tok == f"--study={DEFAULT_STUDY}":
            i += 1
            continue
        out.append(tok)
        i += 1
    return out


def detect(argv) -> tuple[str, list[str]]:
    """(mode, the argv its parser reads).  A leading mode word is the subcommand style (the word
    becomes the mode's flag); otherwise the mode flags decide (table when there is none)."""
    argv = list(argv)
    if argv and argv[0] in MODES:
        m, rest = MODES[argv[0]], argv[1:]
        if m.name != "study":
            rest = _drop_default_study(rest)
        if m.name == "table":
            return "table", rest
        if m.flag in rest or any(t.startswith(m.flag + "=") for t in rest):
            return m.name, rest
        if m.name in ("predict", "study"):   # flags with values: ``predict a.jpg`` = ``--predict a.jpg``
            if rest and not rest[0].startswith("-"):
                return m.name, [m.flag, *rest]
            return m.name, rest               # predict: positional images; study: run() asks for --study
        return m.name, [m.flag, *rest]
    argv = _drop_default_study(argv)
    for name in FLAG_ORDER:
        if _option_value(argv, MODES[name].flag) is not None:
            return name, argv
    return "table", argv


def parse(argv, prog: str = PROG) -> argparse.Namespace:
    """The namespace of a command line in either style (raises :class:`UsageError`)."""
    mode, rest = detect(argv)
    return build_parser(mode, prog).parse_args(rest)


class DispatchParser:
    """``parse_args`` of a whole run.py command line in either style (what ``run.build_parser()``
    returns): the namespace of the mode :func:`detect` picks, from that mode's parser."""

    def __init__(self, prog: str = PROG):
        self.prog = prog

    def parse_args(self, argv=None):
        import sys
        return parse(sys.argv[1:] if argv is None else argv, self.prog)


def overview() -> str:
    """The no-argument text of run.py: every mode with its flag-style spelling."""
    lines = [f"usage: {PROG} MODE [options]   ({PROG} MODE --help lists a mode's options)", "", "modes:"]
    spell = {"table": "--table T [--row R] [--col C] --lmdb DIR | --adience DIR", "list": "--list",
             "fetch": "--fetch-assets", "demo": "--demo", "predict": "--predict IMAGES...",
             "explain": "--explain --images IMAGES...", "train": "--train --table T --row R --col C ...",
             "study": "--study NAME"}
    for m in MODES.values():
        lines.append(f"  {m.name:<8} {spell[m.name]:<49} {m.summary}")
    lines += ["", f"Each mode also runs as {PROG} MODE [options] (e.g. {PROG} train --table 2 ...)."]
    return "\n".join(lines)
