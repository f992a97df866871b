"""Options, checks and user errors shared by ``run.py``'s modes (table, train, predict, explain, ...).

What it owns: the one user-input error of the command line (:class:`UsageError`: printed as one
line, exit code 2), the missing-inputs error and message, the option groups more than one mode
declares (cell selection, data inputs, trained weights, upstream assets, output folder, device,
progress), fold parsing, the ``--device`` check, the checks of the table options every mode that
scores fold models relies on, and the progress bar.  Each mode adds exactly the groups it uses,
so one option name means one thing in a mode's parser.  It imports no mode, so every mode may
import it.
"""
from __future__ import annotations

import sys

from reproduce import grid, sources
from reproduce.assets import ENV_MIRROR, ENV_ROOT
from converters.errors import InputError

ALL_FOLDS = "0,1,2,3,4"


class UsageError(InputError):
    """A bad option or option value (the message names the option)."""


class MissingInputs(InputError):
    """Inputs a run needs are absent (the message lists them and says how to get them)."""


# ---------------------------------------------------------------------------- option groups
def add_cell_arguments(parser, title: str = "what to evaluate"):
    """--table/--row/--col/--folds/--source/--iter: the table cells and folds a mode scores (or trains)."""
    g = parser.add_argument_group(title)
    g.add_argument("--table", type=int, help="2 (age), 3 (gender), 4/5 (test-set swapping)")
    g.add_argument("--row", action="append", help="row(s): i, r, m, i,n, r,n, m,n, i,w, r,w, m,w or all")
    g.add_argument("--col", action="append", help="column(s): A, C, G, V (comma separated) or all")
    g.add_argument("--folds", default=ALL_FOLDS, help=f"test folds (default {ALL_FOLDS})")
    g.add_argument("--source", choices=("paper", "readme"), default="paper",
                   help="paper: final snapshot (default); readme: best snapshot up to 100k iterations, "
                        "accuracy and 1-off maximised independently (as the upstream README)")
    g.add_argument("--iter", type=int, help="score this snapshot iteration instead of the final one")
    return g


def add_data_arguments(parser, title: str = "inputs"):
    """--lmdb/--adience/--means: the Adience data (LMDBs or raw faces) and the mean images; returns
    the group (a mode adds its other inputs there)."""
    g = parser.add_argument_group(title)
    g.add_argument("--lmdb", help="folder with lmdb{,_unaligned,_mixed}/Test_fold_is_K/{age,gender}_test_lmdb")
    g.add_argument("--adience", help="raw Adience folder with aligned/ and faces/ (instead of --lmdb)")
    add_means_argument(g)
    return g


def add_means_argument(group) -> None:
    group.add_argument("--means", help="folder with mean_image{,_unaligned,_mixed}/Test_fold_is_K/mean.binaryproto "
                                       "(default: the upstream mean images, fetched on demand)")


def add_weights_arguments(group) -> None:
    """--weights/--weights-name: the trained fold models in the upstream archive layout."""
    group.add_argument("--weights", help="folder with <folder>/models_test_is_K/caffenet_train_iter_N.caffemodel; "
                                         "<folder>/deploy.prototxt there replaces the upstream deploy")
    group.add_argument("--weights-name", default=sources.DEFAULT_WEIGHTS_NAME,
                       help="weights file name pattern inside models_test_is_K ({iter}, {fold}, {folder}); "
                            f"default {sources.DEFAULT_WEIGHTS_NAME}")


def add_asset_arguments(group) -> None:
    """--assets-mirror/--assets-dir: where the upstream prototxts, fold lists and means come from."""
    group.add_argument("--assets-mirror", help=f"folder laid out like the upstream repository, or a base URL "
                                               f"(also ${ENV_MIRROR})")
    group.add_argument("--assets-dir", help=f"where the upstream files go (default: repository root; "
                                            f"also ${ENV_ROOT})")


def add_out_argument(group, help: str) -> None:  # noqa: A002 - argparse's name
    group.add_argument("--out", help=help)


def add_device_argument(group) -> None:
    group.add_argument("--device", default="cpu", help="cpu or cuda[:N]")


def add_progress_argument(group) -> None:
    group.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_backend_argument(group) -> None:
    group.add_argument("--backend", choices=("torch", "onnxruntime", "auto"), default="auto",
                       help="inference engine: auto (default) = onnxruntime on the CPU when installed, else torch")


# ---------------------------------------------------------------------------- checks
def parse_folds(text, option: str = "--folds", allow_all: bool = False) -> list[int]:
    """Comma (or ``;``) separated test folds 0..4, sorted, without repeats; with ``allow_all``,
    None or ``all`` mean the five folds (predict's ``--fold``).  Errors name ``option``."""
    if allow_all and (text is None or str(text).strip().lower() == "all"):
        return list(range(5))
    try:
        folds = [int(x) for x in str(text).replace(";", ",").split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{option}: expected comma separated fold numbers 0..4"
                         f"{' or all' if allow_all else ''}, got {text!r}") from None
    if not folds or any(f not in range(5) for f in folds):
        raise UsageError(f"{option}: folds are 0..4{' (or all)' if allow_all else ''}, got {text!r}")
    return sorted(set(folds))


def check_device(dev: str) -> None:
    """``--device``: cpu, cuda or cuda:N, and CUDA must then be available to torch."""
    if not (dev == "cpu" or dev == "cuda" or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise UsageError(f"--device: expected cpu or cuda[:N], got {dev!r}")
    if dev.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available to torch here")


def validate(args) -> None:
    """The table options' checks (one :class:`UsageError` naming the option).  ``args`` is the
    table or train mode's namespace (:func:`add_cell_arguments`, :func:`add_data_arguments`,
    ``--batch``, ``--device``, ``--backend``)."""
    if args.table is not None and args.table not in grid.TABLES:
        raise UsageError(f"--table: expected 2, 3, 4 or 5, got {args.table}")
    if args.lmdb and args.adience:
        raise UsageError("give either --lmdb or --adience, not both")
    if args.iter is not None and args.source == "readme":
        raise UsageError("--iter and --source readme exclude each other")
    if args.iter is not None and args.iter <= 0:
        raise UsageError(f"--iter: expected a positive iteration, got {args.iter}")
    if args.batch is not None and args.batch <= 0:
        raise UsageError(f"--batch: expected a positive number of images, got {args.batch}")
    if args.source == "readme" and "{iter}" not in args.weights_name:
        raise UsageError("--source readme needs {iter} in --weights-name to find the snapshots")
    check_device(args.device)
    from converters import ort_backend
    try:
        ort_backend.resolve_backend(args.backend, args.device)
    except ort_backend.BackendError as exc:
        raise UsageError(f"--backend: {exc}")


# ---------------------------------------------------------------------------- messages
def listing(what: str, paths, show: int = 4) -> str:
    """``what``s not found (N): the first ``show`` paths, one a line, and how many more."""
    paths = [str(p) for p in paths]
    head = "\n      ".join(paths[:show])
    more = f"\n      ... and {len(paths) - show} more" if len(paths) > show else ""
    return f"{what}{'s' if len(paths) > 1 else ''} not found ({len(paths)}):\n      {head}{more}"


def cells_text(cells) -> str:
    """``Table T (row col, ...)``: the cells a run was asked for."""
    return f"Table {cells[0].table} ({', '.join(f'{c.row} {c.col}' for c in cells)})"


def missing_inputs_message(prog: str, what: str, missing: list[str], where: list[str]) -> str:
    """The several-line report of a run refused for absent inputs: what cannot be done (``cannot
    {what}``), one bullet per missing input, then ``where`` (lines saying where the inputs go and
    where to get them).  Every mode that checks its inputs first prints it (exit code 2)."""
    lines = [f"{prog}: cannot {what}: inputs are missing", ""]
    lines += [f"  * {m}" for m in missing]
    lines += ["", "Where the inputs go and where to get them:", *where]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- progress
class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix_str(self, s):
        pass

    def close(self):
        pass


def progress_bar(total, desc: str, off: bool = False, unit: str = "img"):
    """A tqdm bar on stderr (hidden when stderr is not a terminal), or a silent stand-in with ``off``
    (``--no-progress``)."""
    if off:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=None, leave=False)

