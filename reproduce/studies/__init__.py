"""The follow-up studies: the ``study`` mode of ``run.py`` (``run.py --study NAME`` or ``run.py study
NAME``; the 2017 tables are the other modes).

* ``mtl2022`` (:mod:`.mtl2022`): single-task, multi-task and transfer-learning nets on Adience with
  the 2017 fold lists;
* ``fusion2022`` (:mod:`.fusion2022`): end-to-end vs gender-specific fusion ResNets for gender, age
  group and race on FairFace and UTKFace, with per-race accuracy breakdowns.

What it owns: the study mode's options (:func:`add_arguments`: the shared ones, ``--list``,
``--folds``, ``--row`` (the study's rows), ``--adience``, ``--lmdb``, ``--out``, ``--batch``
(training batch), ``--device``, ``--no-progress``, ``--assets-dir``/``--assets-mirror`` (the 2017
fold lists), and the study options of :func:`add_study_arguments`), their study defaults
(:func:`option`, :func:`normalized`: also for callers that build their own namespace) and
:func:`run_study`.  ``--init`` here is a weights FILE (the train mode's ``--init`` is a folder).
Also ``python -m reproduce.studies ...``.
"""
from __future__ import annotations

import re
import sys

from reproduce import options as shared
from converters.errors import InputError

STUDIES = ("lapuschkin2017", "mtl2022", "fusion2022")
DEFAULT_STUDY = "lapuschkin2017"


def add_arguments(parser) -> None:
    """The study mode's options: what the studies share with the other modes, then the study options."""
    g = parser.add_argument_group("what to run")
    g.add_argument("--list", action="store_true", help="print the study's grid (its rows) and exit")
    g.add_argument("--row", action="append", help="the study's rows (see --list), comma separated, or all")
    g.add_argument("--folds", default=shared.ALL_FOLDS, help=f"test folds (default {shared.ALL_FOLDS})")
    inp = parser.add_argument_group("inputs")
    inp.add_argument("--lmdb", help="mtl2022: folder with lmdb/Test_fold_is_K/{age,gender}_{train,val,test}_lmdb")
    inp.add_argument("--adience", help="mtl2022: raw Adience folder with aligned/ (instead of --lmdb)")
    shared.add_asset_arguments(inp)
    run = parser.add_argument_group("running")
    shared.add_out_argument(run, "output folder (default out/<study>)")
    run.add_argument("--batch", type=int, help="training batch (default: the study's)")
    shared.add_device_argument(run)
    shared.add_progress_argument(run)
    add_study_arguments(parser)


def add_study_arguments(parser) -> None:
    """The options only the studies have (--study, the datasets, --init FILE, the training settings)."""
    g = parser.add_argument_group("follow-up studies (--study mtl2022 | fusion2022; see reproduce/studies)")
    g.add_argument("--study", choices=STUDIES, default=None,
                   help="lapuschkin2017 (default: Tables 2-5), mtl2022 (multi-task on Adience), fusion2022 "
                        "(gender-specific fusion on FairFace/UTKFace); with --list: that study's grid")
    g.add_argument("--fairface", metavar="DIR", help="fusion2022: FairFace folder with fairface_label_{train,val}.csv "
                                                     "and the image folders the CSVs name (train/, val/)")
    g.add_argument("--utkface", metavar="DIR", help="fusion2022: UTKFace folder with <age>_<gender>_<race>_<date>.jpg")
    g.add_argument("--init", metavar="FILE",
                   help="mtl2022 transfer backbone weights (.caffemodel with --backbone, or a converted "
                        "model.pt); fusion2022 ResNet state_dict file (torchvision names) or 'scratch'")
    g.add_argument("--backbone", metavar="PROTOTXT", help="mtl2022 transfer: deploy prototxt of the --init caffemodel")
    g.add_argument("--backbone-blob", metavar="NAME",
                   help="mtl2022 transfer: blob the backbone is cut at (default: its last 4-D blob, e.g. pool5)")
    g.add_argument("--backbone-mean", default=None, metavar="B,G,R",
                   help="mtl2022 transfer: BGR mean subtracted for the Caffe backbone (default 104,117,123)")
    g.add_argument("--backbone-scale", type=float, default=None,
                   help="mtl2022 transfer: input scale after the mean (default 1)")
    g.add_argument("--trainable-layers", type=int, default=None, metavar="N",
                   help="mtl2022 transfer: the last N backbone layers train (default 10, as the study)")
    g.add_argument("--gamma", type=float, default=None,
                   help="mtl2022: multi-task loss gamma*L_gender + (1-gamma)*L_age (default 0.5)")
    g.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="maximum epochs (default: the study's, 100 / 30)")
    g.add_argument("--patience", type=int, default=None, metavar="N",
                   help="early-stopping patience in epochs (default: the study's, 10 / 5)")
    g.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: the study's, 1e-4 / 2e-4)")
    g.add_argument("--input-size", type=int, default=None, metavar="S",
                   help="network input (crop) size (default: 227 mtl2022, 224 fusion2022)")
    g.add_argument("--transfer-input-size", type=int, default=None, metavar="S",
                   help="mtl2022 transfer input size (default 299, the study's Xception)")
    g.add_argument("--resize", type=int, default=None, metavar="R",
                   help="images are squashed to RxR before cropping (default round(S*256/227): 256 for 227)")
    g.add_argument("--arch", choices=("resnet18", "resnet34", "resnet50"), default=None,
                   help="fusion2022 ResNet (default resnet34)")
    g.add_argument("--resnet-width", type=int, default=None,
                   help="fusion2022 ResNet base width (64; smaller for tests)")
    g.add_argument("--fold-lists", metavar="DIR",
                   help="mtl2022: folder with train_val_txt_files_per_fold/ (default: the upstream 2017 lists)")
    g.add_argument("--test-crops", type=int, choices=(1, 10), default=None,
                   help="mtl2022 test crops: 1 = centre (default), 10 = the 2017 10-crop average")
    g.add_argument("--limit", type=int, default=None, metavar="N",
                   help="use at most N images per split (smoke runs; not the study)")
    g.add_argument("--skip-malformed", action="store_true",
                   help="fusion2022: leave out UTKFace files whose names do not parse (listed in results.json)")
    g.add_argument("--seed", type=int, default=None, help="seed of initialisation, shuffling and splits (default 0)")
    g.add_argument("--workers", type=int, default=None, help="DataLoader worker processes (default 2)")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")


OPTION_DEFAULTS = {"backbone_mean": "104,117,123", "backbone_scale": 1.0, "resnet_width": 64, "test_crops": 1,
                   "seed": 0, "workers": 2, "skip_malformed": False, "folds": "0,1,2,3,4"}


def option(args, name: str, default=None):
    """``args.<name>``, or the study default when the option is absent or None (the parser leaves the
    study defaults to this, and a caller's own namespace may lack options)."""
    value = getattr(args, name, None)
    if value is None:
        return OPTION_DEFAULTS.get(name, default)
    return value


STUDY_OPTIONS = ("study", "fairface", "utkface", "init", "backbone", "backbone_blob", "backbone_mean",
                 "backbone_scale", "trainable_layers", "gamma", "epochs", "patience", "lr", "input_size",
                 "transfer_input_size", "resize", "arch", "resnet_width", "fold_lists", "test_crops", "limit",
                 "skip_malformed", "seed", "workers", "threads", "row", "folds", "list", "adience", "lmdb", "out",
                 "batch", "device", "no_progress", "assets_dir", "assets_mirror")


def normalized(args):
    """A copy of ``args`` with every option the study code reads present, absent/None ones at the study default."""
    import argparse
    ns = argparse.Namespace(**vars(args))
    for name in STUDY_OPTIONS:
        setattr(ns, name, option(args, name, "cpu" if name == "device" else None))
    return ns


def parse_rows(values, allowed: tuple, study: str) -> list[str]:
    if not values:
        return list(allowed)
    rows = []
    for v in values:
        for part in re.split(r"[,;\s]+", str(v)):
            if not part:
                continue
            if part.lower() == "all":
                rows += list(allowed)
                continue
            if part.lower() not in allowed:
                raise ValueError(f"--row: {part!r} is not a row of study {study} (rows: {', '.join(allowed)})")
            rows.append(part.lower())
    return [r for r in allowed if r in rows]


def _check_common(args) -> None:
    shared.check_device(args.device)
    for name in ("epochs", "patience", "batch", "input_size", "transfer_input_size", "resize", "limit",
                 "resnet_width"):
        v = option(args, name)
        if v is not None and v <= 0:
            raise ValueError(f"--{name.replace('_', '-')}: expected a positive number, got {v}")
    if option(args, "workers") < 0:
        raise ValueError(f"--workers: expected >= 0, got {option(args, 'workers')}")
    if option(args, "trainable_layers") is not None and option(args, "trainable_layers") < 0:
        raise ValueError(f"--trainable-layers: expected >= 0, got {option(args, 'trainable_layers')}")
    gamma = option(args, "gamma")
    if gamma is not None and not 0.0 <= gamma <= 1.0:
        raise ValueError(f"--gamma: expected a value in [0, 1], got {gamma}")
    if option(args, "lr") is not None and option(args, "lr") <= 0:
        raise ValueError(f"--lr: expected a positive learning rate, got {option(args, 'lr')}")
    try:
        mean = [float(v) for v in str(option(args, "backbone_mean")).split(",")]
    except ValueError:
        mean = []
    if len(mean) != 3:
        raise ValueError(f"--backbone-mean: expected three comma separated numbers B,G,R, "
                         f"got {option(args, 'backbone_mean')!r}")


def run(args) -> int:
    """``run.py --study NAME`` / ``run.py study NAME``."""
    if args.study is None:
        return report_usage("run.py", "the study mode needs the study: --study mtl2022|fusion2022 "
                                      "(run.py study NAME)")
    if args.study == DEFAULT_STUDY:
        return report_usage("run.py", f"{DEFAULT_STUDY} is the 2017 tables: leave --study out "
                                      "(run.py table|train|predict|explain ...)")
    return run_study(args)


def report_usage(prog: str, message: str) -> int:
    from converters.errors import report
    return report(prog, shared.UsageError(message))


def run_study(args, prog: str = "run.py") -> int | None:
    """Run the study named by ``args.study``; None for the default study (the 2017 tables: another mode)."""
    study = args.study
    if study in (None, DEFAULT_STUDY):
        return None
    args = normalized(args)
    try:
        _check_common(args)
        if study == "mtl2022":
            from . import mtl2022 as mod
        else:
            from . import fusion2022 as mod
        rows = parse_rows(args.row, mod.ROWS, study)
        if args.list:
            print(mod.listing())
            return 0
        folds = shared.parse_folds(args.folds)
    except (ValueError, InputError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    import torch
    saved = torch.get_num_threads()
    if option(args, "threads"):
        torch.set_num_threads(option(args, "threads"))
    try:
        return mod.run(args, rows, folds, prog=prog)
    finally:
        torch.set_num_threads(saved)
