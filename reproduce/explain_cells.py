"""The explain mode: LRP heatmaps of the selected table cells' fold models for face images.

    python reproduce/run.py --explain --table 3 --row m,n --col G --images a.jpg b.jpg:1 --weights MODELS
    python reproduce/run.py explain --table 3 --row m,n --col G --images a.jpg --weights MODELS

What it owns: the mode's options and its run (:func:`add_arguments`, :func:`run`); the heatmaps
themselves are :func:`reproduce.explain.explain_cells`.  ``--predict ... --explain`` (the heatmap
of the predicted class per face) is the predict mode's option, not this mode.
"""
from __future__ import annotations

from reproduce import explain, fetch, grid, options
from reproduce.assets import AssetStore
from converters.errors import InputError, report

PROG = "run.py"
DEFAULT_OUT = "out/explain"


def add_arguments(parser) -> None:
    g = parser.add_argument_group("what to explain")
    g.add_argument("--explain", action="store_true", help="this mode (the flag style's mode flag)")
    g.add_argument("--table", type=int, help="2 (age), 3 (gender), 4/5 (test-set swapping)")
    g.add_argument("--row", action="append", help="row(s): i, r, m, i,n, r,n, m,n, i,w, r,w, m,w or all")
    g.add_argument("--col", action="append", help="column(s): A, C, G, V (comma separated) or all")
    g.add_argument("--folds", default=options.ALL_FOLDS, help=f"fold models (default {options.ALL_FOLDS})")
    g.add_argument("--iter", type=int, help="explain this snapshot iteration instead of the final one")
    g.add_argument("--images", nargs="+", metavar="IMAGE[:LABEL]", help="images to explain")
    inp = parser.add_argument_group("inputs")
    options.add_weights_arguments(inp)
    options.add_means_argument(inp)
    options.add_asset_arguments(inp)
    lrp = parser.add_argument_group("LRP (reproduce/explain.py)")
    lrp.add_argument("--class", dest="class_mode", default="predicted",
                     help="class to explain: predicted (default), true (label from IMAGE:LABEL) or an index")
    lrp.add_argument("--eps", type=float, default=explain.EPS,
                     help=f"epsilon of the InnerProduct rule (default {explain.EPS} as the upstream script; "
                          f"the paper's text says 0.01)")
    lrp.add_argument("--lrn", choices=("taylor", "identity"), default="taylor", help="LRN rule (default taylor)")
    lrp.add_argument("--flat-mode", choices=("toolbox", "normalized"), default="toolbox",
                     help="flat rule weights (default toolbox)")
    lrp.add_argument("--preprocess", choices=("protocol", "demonstrator"), default="protocol",
                     help="image preprocessing (default protocol: 256x256, mean, centre crop)")
    run_g = parser.add_argument_group("running")
    options.add_out_argument(run_g, f"output folder (default {DEFAULT_OUT})")
    options.add_progress_argument(run_g)
    fetch.add_fetch_arguments(parser)


def run(args) -> int:
    """``--explain --table T --row R --col C --images ...``: heatmaps of every fold model of the cells."""
    try:
        if args.table is None or not args.images:
            raise options.UsageError("--explain needs --table, --row/--col and --images (or use it with --predict)")
        if args.iter is not None and args.iter <= 0:
            raise options.UsageError(f"--iter: expected a positive iteration, got {args.iter}")
        folds = options.parse_folds(args.folds)
        if args.out:
            from converters.outputs import check_output_dir
            check_output_dir(args.out, "--out folder")
    except InputError as exc:
        return report(PROG, exc)
    code = fetch.prepare(args)   # --fetch: the cells' fold models, then --weights points there
    if code is not None:
        return code
    out = args.out or DEFAULT_OUT
    try:
        if not args.weights:
            raise options.UsageError("--explain needs --weights DIR (the trained models, upstream archive layout)")
        cells = grid.select(args.table, args.row, args.col)
        store = AssetStore(args.assets_dir, args.assets_mirror, progress=False if args.no_progress else None)
        summary = explain.explain_cells(
            cells, args.images, args.weights, folds, out,
            explain.parse_class_mode(args.class_mode), means_dir=args.means, store=store, eps=args.eps,
            lrn=args.lrn, flat_mode=args.flat_mode, preprocess=args.preprocess,
            weights_name=args.weights_name, iteration=args.iter, progress=print)
    except InputError as exc:
        return report(PROG, exc)
    print(f"wrote heatmaps of {len(summary.get('cells', summary))} cell(s) to {out}")
    return 0
