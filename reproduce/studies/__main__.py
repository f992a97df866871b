"""``python -m reproduce.studies --study mtl2022|fusion2022 ...``: the follow-up studies (the same
options as ``run.py study``, which is the wired entry point).  An entry point: it may import
``run.py``'s mode registry, which the study modules themselves never do (no import cycle)."""
import sys

from converters.errors import InputError, report
from reproduce import modes, run

PROG = "python -m reproduce.studies"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    mode, _ = modes.detect(argv)
    if mode != "study":             # no --study NAME (or the 2017 default): run.py's other modes
        return run.main(argv)
    try:
        args = modes.build_parser("study", PROG).parse_args(modes.detect(argv)[1])
    except InputError as exc:
        return report(PROG, exc)
    from reproduce.studies import run_study
    return run_study(args, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
