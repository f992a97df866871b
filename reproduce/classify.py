"""The classifier of ``--predict``: Caffe nets with their means whose 10-crop probabilities are
averaged, and what its classes are called.

Owns: :class:`Net` (one net, its mean, input size and softmax blob; :func:`check_classifier`
refuses nets that do not take square 3-channel crops or do not end in a Softmax),
:class:`Classifier` (``probabilities`` of uint8 BGR faces: per net the mean of
:func:`reproduce.protocol.crop_outputs`' 10 crops, then the mean over the nets), the two ways to
get one: a paper cell's fold models (:func:`cell_classifier`, the files and the load by
:mod:`reproduce.cell_model`, as every mode) or any Caffe classifier (:func:`custom_classifier`,
``--deploy/--caffemodel`` with ``--mean``/``--mean-value``), the class names (:data:`LABELS`,
:func:`read_labels`), the mean files and values, and the LRP relevance of its predictions
(:func:`explain_faces`, the paper composite per family).  Errors are :class:`PredictError`, the
one line ``--predict`` shows.
"""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converters.errors import InputError
from reproduce import cell_model, grid, protocol
from reproduce.folds import AGE_GROUPS

PROG = "predict"
DEFAULT_RESIZE = 256       # the LMDB image size (convert_imageset --resize_height/width 256)
# The class names are the label indices of upstream's data preparation (spec 4.2; the age strings
# are reproduce.folds.AGE_GROUPS).  Upstream's heatmap_drawing/synset_age.txt spells class 2
# "(8, 13)" and synset_gender.txt has "m"/"f"; the indices agree.
LABELS = {"age": tuple(AGE_GROUPS), "gender": ("male", "female")}


class PredictError(ValueError, InputError):
    """A bad input; the message is the one line shown to the user."""


# ---------------------------------------------------------------------------- the nets
@dataclass
class Net:
    """One Caffe classifier with the mean its inputs are centred with."""
    name: str
    model: object
    mean: object            # torch (C, H, W) / (C, 1, 1) float32, or None (--no-mean)
    input_size: int
    output_blob: str
    deploy: str
    weights: str
    mean_source: str | None


@dataclass
class Classifier:
    """The nets whose 10-crop probabilities are averaged, and what the classes are called."""
    nets: list
    labels: tuple
    target: str | None      # "age" / "gender" when the classes are Adience's (1-off groups for age)
    resize: tuple           # (H, W) the photo/face is squashed to before the crops
    device: str = "cpu"
    family: str | None = None
    description: str = ""
    channels_last: bool = True

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    def probabilities(self, faces: np.ndarray) -> np.ndarray:
        """(B, C) probabilities of uint8 (B, 3, H, W) BGR faces: per net the mean of the 10 crops'
        softmax rows, then the mean over the nets."""
        import torch
        x = torch.from_numpy(np.ascontiguousarray(faces)).to(self.device).to(torch.float32)
        per_net = []
        with torch.inference_mode():
            for net in self.nets:
                xi = x - net.mean if net.mean is not None else x
                layout = torch.channels_last if self.channels_last else torch.contiguous_format
                out = protocol.crop_outputs(net.model, xi, net.input_size, net.output_blob, layout)
                if out.shape[2] != self.n_classes:
                    raise PredictError(f"{net.deploy}: output blob {net.output_blob!r} has {out.shape[2]} classes, "
                                       f"{self.n_classes} labels")
                per_net.append(np.mean(out, axis=1, dtype=np.float32))
        if len(per_net) == 1:
            return per_net[0]
        return np.mean(np.stack(per_net), axis=0, dtype=np.float32)


def _blob_producer(net_param, blob: str):
    producer = None
    for layer in net_param.layer:
        if blob in layer.top:
            producer = layer
    return producer


def check_classifier(model, deploy, output_blob: str | None = None, input_size: int | None = None) -> tuple[int, str]:
    """(crop side, softmax blob) of a loaded net that takes (N, 3, S, S) crops and ends in a Softmax;
    PredictError naming ``deploy`` otherwise."""
    if not model.input_names:
        raise PredictError(f"{deploy}: the net declares no input blob")
    shape = tuple(model.input_shapes[model.input_names[0]])
    if len(shape) != 4 or shape[1] != 3:
        raise PredictError(f"{deploy}: input {model.input_names[0]!r} has shape {shape}; an image classifier "
                           "takes (N, 3, S, S) BGR crops")
    if shape[2] != shape[3]:
        raise PredictError(f"{deploy}: input crops are {shape[2]}x{shape[3]}; the 10-crop protocol needs square crops")
    if input_size is not None and int(input_size) != shape[2]:
        raise PredictError(f"{deploy}: input is {shape[2]}x{shape[3]}, the paper cell says {input_size}")
    outputs = list(model.output_names)
    if output_blob is None:
        if len(outputs) == 1:
            output_blob = outputs[0]
        else:
            for cand in ("prob", "loss3/loss3"):
                if cand in outputs:
                    output_blob = cand
                    break
            else:
                raise PredictError(f"{deploy}: the net has several outputs ({', '.join(outputs)}); "
                                   "choose the softmax with --output-blob")
    if output_blob not in model.blob_shapes:
        raise PredictError(f"{deploy}: the net has no blob {output_blob!r} (outputs: {', '.join(outputs)})")
    bshape = tuple(model.blob_shapes[output_blob])
    producer = _blob_producer(model.net_param, output_blob)
    if len(bshape) < 2 or any(d != 1 for d in bshape[2:]) or bshape[1] < 2:
        raise PredictError(f"{deploy}: blob {output_blob!r} has shape {bshape}: not a classifier's (N, classes) "
                           "output")
    if producer is None or producer.type != "Softmax":
        kind = producer.type if producer is not None else "no"
        raise PredictError(f"{deploy}: blob {output_blob!r} comes from a {kind} layer, not Softmax: not class "
                           "probabilities (give the softmax blob with --output-blob)")
    return int(shape[2]), output_blob


def _net(model, deploy, weights, mean, name: str, output_blob: str | None, input_size: int | None, device: str,
         channels_last: bool, mean_source: str | None) -> Net:
    import torch
    size, output_blob = check_classifier(model, deploy, output_blob, input_size)
    model.eval().to(device)
    model.use_channels_last(channels_last)
    mean_t = None
    if mean is not None:
        mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float32), device=device)
    return Net(name, model, mean_t, size, output_blob, str(deploy), str(weights), mean_source)


def load_net(deploy, weights, mean, name: str, output_blob: str | None = None, input_size: int | None = None,
             device: str = "cpu", channels_last: bool = True, mean_source: str | None = None) -> Net:
    """Any Caffe classifier (``--deploy/--caffemodel``): checks that it takes a 3-channel square
    image and ends in a Softmax (a paper cell's fold models load through :mod:`reproduce.cell_model`)."""
    import converters
    for what, path in (("deploy prototxt", deploy), ("caffemodel", weights)):
        if not Path(path).is_file():
            raise PredictError(f"{path}: {what} not found")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # missing weights are reported below as an error
        model = converters.load_caffe(str(deploy), str(weights), phase="test")
    missing = list(getattr(model, "missing_weights", ()))
    if missing:
        raise PredictError(f"{weights}: no weights for layer(s) {', '.join(missing)} of {deploy} "
                           "(a caffemodel of another net?)")
    return _net(model, deploy, weights, mean, name, output_blob, input_size, device, channels_last, mean_source)


def parse_mean_value(text: str) -> np.ndarray:
    try:
        vals = [float(v) for v in str(text).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        vals = []
    if len(vals) != 3:
        raise PredictError(f"--mean-value: expected three numbers B,G,R (BGR order, 0..255), got {text!r}")
    return np.asarray(vals, dtype=np.float32).reshape(3, 1, 1)


def read_mean_file(path) -> np.ndarray:
    from converters.formats import read_mean
    if not Path(path).is_file():
        raise PredictError(f"{path}: mean file not found (the net was trained on mean-subtracted images; "
                           "without the mean its probabilities are garbage)")
    mean = read_mean(path)
    if mean.shape[0] != 3:
        raise PredictError(f"{path}: mean has {mean.shape[0]} channel(s), expected 3 (BGR)")
    return mean


def read_labels(spec: str | None, n_classes: int, guess: bool = True) -> tuple[tuple, str | None]:
    """(names, target) for ``--labels age|gender|FILE|NAME,NAME,...`` (a file has one name per
    line), or without ``spec``: the paper's names by the class count when ``guess`` (a paper
    cell), else ``class 0``, ``class 1``, ... (any other classifier: a 2-class net is not
    necessarily a gender net)."""
    if spec in LABELS:
        names, target = LABELS[spec], spec
    elif spec:
        p = Path(spec)
        if p.is_file():
            names = tuple(line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip())
        elif "," in spec:
            names = tuple(n.strip() for n in spec.split(","))
            if not all(names):
                raise PredictError(f"--labels {spec!r}: an empty name in the comma-separated list")
        else:
            raise PredictError(f"--labels: {spec!r} is neither age, gender, a file nor "
                               "comma-separated names")
        target = None
    else:
        target = {8: "age", 2: "gender"}.get(n_classes) if guess else None
        names = LABELS[target] if target else tuple(f"class {i}" for i in range(n_classes))
    if len(names) != n_classes:
        raise PredictError(f"--labels {spec}: {len(names)} names for a net with {n_classes} classes")
    return tuple(names), target


def _n_classes(net: Net) -> int:
    shape = net.model.blob_shapes[net.output_blob]
    return int(np.prod(shape[1:]))


# ---------------------------------------------------------------------------- the two kinds of model
def select_cell(table, rows, cols) -> grid.Cell:
    """The one filled cell named by ``--table``/``--row``/``--col`` (the column may be implied)."""
    table = int(table)
    if table not in grid.TABLES:
        raise PredictError(f"--table: expected 2, 3, 4 or 5, got {table}")
    if not rows:
        raise PredictError(f"--table {table} needs --row (one of {' '.join(grid.ROWS[table])})")
    try:
        rows = grid.parse_rows(rows if isinstance(rows, (list, tuple)) else [rows], table)
        cols = grid.parse_cols(cols if isinstance(cols, (list, tuple)) else [cols], table) if cols else None
    except grid.GridError as exc:
        raise PredictError(str(exc)) from None
    if len(rows) != 1:
        raise PredictError(f"--row: predictions use one model, got rows {' '.join(rows)}")
    if cols is not None and len(cols) != 1:
        raise PredictError(f"--col: predictions use one model, got columns {' '.join(cols)}")
    candidates = [grid.cell(table, rows[0], c) for c in (cols or grid.COLUMNS[table])]
    filled = [c for c in candidates if not c.empty]
    if not filled:
        where = f"{rows[0]} {cols[0]}" if cols else f"row {rows[0]}"
        raise PredictError(f"Table {table} {where} is empty in the paper: no model to predict with")
    if len(filled) > 1:
        raise PredictError(f"Table {table} row {rows[0]} has models in columns "
                           f"{', '.join(c.col for c in filled)}: choose one with --col")
    return filled[0]


def custom_classifier(args, device: str = "cpu", channels_last: bool = True, no_mean: bool = False) -> Classifier:
    """Any Caffe classifier from the options ``--deploy/--caffemodel/--mean|--mean-value|--no-mean/
    --labels/--output-blob/--resize``."""
    deploy, caffemodel = getattr(args, "deploy", None), getattr(args, "caffemodel", None)
    if not deploy or not caffemodel:
        raise PredictError("--deploy and --caffemodel go together (the net and its trained weights)")
    if getattr(args, "fold", None) is not None:
        raise PredictError("--fold selects a fold model of a paper cell (--table); not with --deploy")
    mean_file, mean_value = getattr(args, "mean", None), getattr(args, "mean_value", None)
    if mean_file and mean_value:
        raise PredictError("give either --mean FILE or --mean-value B,G,R, not both")
    resize = getattr(args, "resize", None)
    if mean_file:
        if no_mean:
            raise PredictError("--no-mean contradicts --mean")
        mean = read_mean_file(mean_file)
        size = (int(mean.shape[1]), int(mean.shape[2]))
        if resize is not None and (resize, resize) != size:
            raise PredictError(f"--resize {resize}: the mean image {mean_file} is {size[0]}x{size[1]}; the full mean "
                               "is subtracted before cropping, so images are resized to its size")
        source = str(mean_file)
    elif mean_value:
        if no_mean:
            raise PredictError("--no-mean contradicts --mean-value")
        mean = parse_mean_value(mean_value)
        size = (resize or DEFAULT_RESIZE,) * 2
        source = f"per-channel BGR {','.join(f'{v:g}' for v in mean.ravel())}"
    elif no_mean:
        mean, source = None, None
        size = (resize or DEFAULT_RESIZE,) * 2
        print(f"{PROG}: warning: --no-mean: nothing is subtracted; nets trained on mean-subtracted images give "
              "meaningless probabilities", file=sys.stderr)
    else:
        raise PredictError(f"no mean image for {deploy}: pass --mean mean.binaryproto (the mean the net was trained "
                           "with) or --mean-value B,G,R; without it the probabilities are garbage (--no-mean to "
                           "predict anyway)")
    net = load_net(deploy, caffemodel, mean, Path(caffemodel).name, getattr(args, "output_blob", None),
                   device=device, channels_last=channels_last, mean_source=source)
    if net.input_size > min(size):
        raise PredictError(f"{deploy}: crops of {net.input_size} do not fit in the {size[0]}x{size[1]} image "
                           "(mean/--resize)")
    labels, target = read_labels(getattr(args, "labels", None), _n_classes(net), guess=False)
    return Classifier([net], labels, target, size, device, None,
                      f"{deploy} + {caffemodel}, mean {source or 'none'}", channels_last)


def cell_classifier(args, folds, device: str = "cpu", channels_last: bool = True,
                    no_mean: bool = False) -> Classifier:
    """The fold models ``folds`` of the paper cell named by ``--table/--row/--col``, each with its own
    fold's mean (``--weights/--weights-name/--iter/--means/--assets-dir/--assets-mirror``); the
    files and the load are :mod:`reproduce.cell_model`'s, as in every mode."""
    for opt in ("mean", "mean_value", "output_blob", "caffemodel"):
        if getattr(args, opt, None):
            raise PredictError(f"--{opt.replace('_', '-')} is for --deploy models; a paper cell brings its own")
    cell = select_cell(args.table, getattr(args, "row", None), getattr(args, "col", None))
    weights_dir = getattr(args, "weights", None)
    name = getattr(args, "weights_name", None)
    iteration = getattr(args, "iter", None) or cell.final_iter
    # every fold's weights are checked before anything is fetched or loaded, and listed together
    absent = [str(cell_model.weights_file(cell, k, weights_dir, name, iteration)) for k in folds] if weights_dir else []
    absent = [p for p in absent if not Path(p).is_file()]
    if absent:
        more = f" and {len(absent) - 1} more" if len(absent) > 1 else ""
        raise PredictError(f"{cell.label} ({cell.folder}): weights not found: {absent[0]}{more} "
                           f"(model archive: {cell_model.WEIGHTS_ARCHIVE}; other file names: --weights-name)")
    from reproduce.assets import AssetStore
    store = AssetStore(getattr(args, "assets_dir", None), getattr(args, "assets_mirror", None),
                       progress=False if getattr(args, "no_progress", False) else None)
    try:
        files = [cell_model.resolve_cell_files(cell, k, weights_dir, weights_name=name, iteration=iteration,
                                               means_dir=getattr(args, "means", None), store=store,
                                               with_mean=not no_mean) for k in folds]
        loaded = [cell_model.load_cell_files(f, device=device) for f in files]
    except cell_model.CellModelError as exc:
        raise PredictError(str(exc)) from None
    nets = [_net(m.model, m.deploy, m.weights, m.mean, f"fold {m.files.fold}", cell.output_blob, cell.input_size,
                 device, channels_last, str(m.mean_file) if m.mean_file is not None else None) for m in loaded]
    if no_mean:
        print(f"{PROG}: warning: --no-mean: the paper's models see mean-subtracted images; these probabilities are "
              "meaningless", file=sys.stderr)
    sizes = {tuple(n.mean.shape[1:]) for n in nets if n.mean is not None}
    if len(sizes) > 1:
        raise PredictError(f"the fold means of {cell.folder} have different sizes {sorted(sizes)}")
    size = sizes.pop() if sizes else (getattr(args, "resize", None) or DEFAULT_RESIZE,) * 2
    labels = LABELS[cell.target]
    if _n_classes(nets[0]) != len(labels):
        raise PredictError(f"{nets[0].deploy}: {_n_classes(nets[0])} classes, the {cell.target} task has "
                           f"{len(labels)}")
    fold_text = f"fold {folds[0]}" if len(folds) == 1 else f"folds {','.join(map(str, folds))} averaged"
    desc = (f"Table {cell.table} {cell.row} {cell.col} = {cell.folder} ({cell.target}), iteration {iteration}, "
            f"{fold_text}, mean [{cell.mean}]")
    return Classifier(nets, labels, cell.target, size, device, cell.family, desc, channels_last)


# ---------------------------------------------------------------------------- relevance
def explain_faces(classifier: Classifier, faces: np.ndarray, classes) -> list[np.ndarray]:
    """Channel-summed LRP relevance (S, S) of the true-centre crop of every face for its class,
    paper composite, averaged over the classifier's nets (upstream compute_average_heatmaps)."""
    import torch
    try:
        from converters import lrp
    except ImportError as exc:
        raise PredictError(f"--explain needs converters.lrp, which cannot be imported here ({exc})") from None
    from reproduce.explain import EPS, FLAT_UPTO   # the paper recipe's settings per family, as data
    composite = lrp.paper_composite(flat_upto=FLAT_UPTO.get(classifier.family or "", 0), eps=EPS)
    x = torch.from_numpy(np.ascontiguousarray(faces)).to(classifier.device).to(torch.float32)
    total = None
    for net in classifier.nets:
        s = net.input_size
        oy, ox = protocol.centre_crop_offset(x.shape[2], s), protocol.centre_crop_offset(x.shape[3], s)
        xi = x - net.mean if net.mean is not None else x
        crop = xi[:, :, oy:oy + s, ox:ox + s].contiguous()
        rel = lrp.explain(net.model, crop, [int(c) for c in classes], composite).relevance
        rel = rel.detach().float().sum(1).cpu().numpy()
        total = rel if total is None else total + rel
    total /= len(classifier.nets)
    return list(total)
