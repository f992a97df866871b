"""Options and user errors shared by ``run.py``'s modes (table, train, predict, explain, ...).

What it owns: the one user-input error of the command line (:class:`UsageError`: printed as one
line, exit code 2), the missing-inputs error, fold parsing and the checks of the table options
every mode that scores fold models relies on (``--folds``, ``--table``, ``--iter``, ``--device``).
It imports no mode, so every mode may import it.
"""
from __future__ import annotations

from reproduce import grid
from converters.errors import InputError


class UsageError(InputError):
    """A bad option or option value (the message names the option)."""


class MissingInputs(InputError):
    """Inputs a run needs are absent (the message lists them and says how to get them)."""


def parse_folds(text: str) -> list[int]:
    """``--folds``: comma (or ``;``) separated test folds 0..4, sorted, without repeats."""
    try:
        folds = [int(x) for x in text.replace(";", ",").split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--folds: expected comma separated fold numbers 0..4, got {text!r}") from None
    if not folds or any(f not in range(5) for f in folds):
        raise UsageError(f"--folds: folds are 0..4, got {text!r}")
    return sorted(set(folds))


def validate(args) -> None:
    """The table options' checks (one :class:`UsageError` naming the option)."""
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
    dev = args.device
    if not (dev == "cpu" or dev == "cuda" or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise UsageError(f"--device: expected cpu or cuda[:N], got {dev!r}")
    if dev.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available to torch here")
    from converters import ort_backend
    try:
        ort_backend.resolve_backend(getattr(args, "backend", "auto"), dev)
    except ort_backend.BackendError as exc:
        raise UsageError(f"--backend: {exc}")
