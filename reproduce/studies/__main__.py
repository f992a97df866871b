"""``python -m reproduce.studies --study mtl2022|fusion2022 ...``: the follow-up studies (same options as
``run.py --study``, which is the wired entry point).  An entry point: it may import ``run.py``'s
parser, which the study modules themselves never do (no import cycle)."""
import sys

from reproduce import run
from reproduce.studies import DEFAULT_STUDY, add_study_arguments, run_study


def build_parser():
    """run.py's parser with the study options."""
    parser = run.build_parser()
    parser.prog = "python -m reproduce.studies"
    add_study_arguments(parser)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except run.UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "study", None) in (None, DEFAULT_STUDY):
        return run.main(argv)
    return run_study(args, prog=parser.prog)


if __name__ == "__main__":
    sys.exit(main())
