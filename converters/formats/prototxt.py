"""Read text prototxts (nets and solvers) and bring them to Caffe's current representation.

What it owns: text parsing with line/column errors, Caffe's upgrade path for legacy nets
(V1 ``layers`` with enum types and ``blobs_lr``/``weight_decay``; top-level ``input``
declarations; data-transformation fields inside ``data_param``), the solver-type upgrade,
and Caffe's NetState rule matching (``filter_net``).  No torch, no Adience knowledge.
"""
from __future__ import annotations

import re
from typing import Iterable

from google.protobuf import text_format
from google.protobuf.message import Message

from ..proto import caffe_pb2 as pb
from .errors import CaffeFormatError
from .files import read_binary

# V1LayerParameter.LayerType -> LayerParameter.type (Caffe's UpgradeV1LayerType).
V1_TYPE_NAMES = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution", "DATA": "Data", "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output", "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData", "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN", "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence", "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice", "TANH": "TanH",
    "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}

# Fields of V1LayerParameter copied verbatim into LayerParameter (same names there).
_V1_COPIED = (
    "accuracy_param", "argmax_param", "concat_param", "contrastive_loss_param", "convolution_param",
    "data_param", "dropout_param", "dummy_data_param", "eltwise_param", "exp_param", "hdf5_data_param",
    "hdf5_output_param", "hinge_loss_param", "image_data_param", "infogain_loss_param",
    "inner_product_param", "lrn_param", "memory_data_param", "mvn_param", "pooling_param",
    "power_param", "relu_param", "sigmoid_param", "softmax_param", "slice_param", "tanh_param",
    "threshold_param", "window_data_param", "transform_param", "loss_param",
)

_PARSE_ERR = re.compile(r"^(?:[^:]*?:)?(\d+):(\d+)\s*:\s*(.*)$", re.S)


_NET_KEYS = re.compile(r"^\s*(layers?|input|input_dim|input_shape)\s*[:{]", re.M)
_SOLVER_KEYS = re.compile(r"^\s*(base_lr|lr_policy|max_iter|net|train_net|test_net|solver_mode|"
                          r"snapshot_prefix|test_iter|test_interval)\s*:", re.M)


# Quoted strings and comments (kept as they are) or a long run of blanks (squeezed).
_LONG_BLANKS = re.compile(r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|#[^\n]*|[ \t\r\f\v]{256,}""")


def _squeeze_blanks(text: str) -> str:
    """Runs of 256+ blanks outside strings and comments become one blank.

    protobuf's Python tokenizer slices the rest of the line at every token, so one 20 MB line
    of blanks costs minutes and gigabytes; blanks between tokens carry no meaning.  (Error
    columns after such a run count the squeezed text.)
    """
    if not re.search(r"[ \t\r\f\v]{256}", text):
        return text
    return _LONG_BLANKS.sub(lambda m: " " if m.group(0)[0] in " \t\r\f\v" else m.group(0), text)


def _parse_text(path, text: str, message: Message) -> Message:
    text = _squeeze_blanks(text)
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        line, col, why = getattr(exc, "_line", None), getattr(exc, "_column", None), str(exc)
        m = _PARSE_ERR.match(why)
        if m:
            line, col, why = int(m.group(1)), int(m.group(2)), m.group(3)
        why = " ".join(why.replace('"converters.caffe.', '"caffe.').split())
        kind = type(message).__name__
        hint = ""
        # A net read as a solver (or the reverse) fails on its first field; say what it is.
        if kind == "NetParameter" and (re.search(r'"(base_lr|lr_policy|max_iter|net)"', why)
                                       or (_SOLVER_KEYS.search(text) and not _NET_KEYS.search(text))):
            hint = " (this looks like a solver prototxt, not a net)"
        if kind == "SolverParameter" and (re.search(r'"(layer|layers|input)"', why)
                                          or (_NET_KEYS.search(text) and not _SOLVER_KEYS.search(text))):
            hint = " (this looks like a net prototxt, not a solver)"
        layer = _layer_at(text, line) if kind == "NetParameter" else None
        raise CaffeFormatError(path, f"not a valid {kind} prototxt: {why}{hint}", line=line,
                               column=col, layer=layer) from None
    return message


_LAYER_OPEN = re.compile(r"^\s*layers?\s*\{", re.M)
_LAYER_NAME = re.compile(r"""\bname\s*:\s*(["'])(.*?)\1""")


def _layer_at(text: str, line) -> str | None:
    """The name of the layer whose block contains 1-based ``line`` (for a parse error such as an
    unknown fork parameter message): the ``name`` after the last ``layer {`` above that line."""
    if not line:
        return None
    lines = text.split("\n")
    upto = "\n".join(lines[:line])
    opens = list(_LAYER_OPEN.finditer(upto))
    if not opens:
        return None
    m = _LAYER_NAME.search(text, opens[-1].end())
    return m.group(2) if m else None


def _read_text(path) -> str:
    raw = read_binary(path, "a text prototxt")
    if not raw.strip():
        raise CaffeFormatError(path, "empty file, expected a text prototxt")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CaffeFormatError(path, f"not a text prototxt (binary data at byte {exc.start}; "
                                     "a caffemodel or binaryproto?)") from None
    if "\x00" in text:
        raise CaffeFormatError(path, f"not a text prototxt (NUL byte at byte {text.index(chr(0))}; "
                                     "a caffemodel or binaryproto?)")
    return text


# The forks that DenseNet-Caffe, SENet and others were written for (BVLC PR #3057, OpenCV's
# schema) have ``optional bool ceil_mode = 13 [default = true]`` in PoolingParameter, the number
# where BVLC later put ``round_mode`` (enum CEIL = 0, FLOOR = 1: the opposite encoding).  A text
# prototxt names the field, so ``ceil_mode: false`` is rewritten to ``round_mode: FLOOR`` (and
# ``true`` to ``CEIL``) before parsing.  A binary caffemodel carries only the number: its value is
# read as BVLC's round_mode; layer parameters are taken from the prototxt, never the caffemodel.
_CEIL_MODE = re.compile(r"\bceil_mode(\s*:\s*)(true|false|True|False|t|f|1|0)\b")


def _rewrite_ceil_mode(text: str) -> str:
    if "ceil_mode" not in text:
        return text
    return _CEIL_MODE.sub(lambda m: "round_mode" + m.group(1)
                          + ("CEIL" if m.group(2) in ("true", "True", "t", "1") else "FLOOR"), text)


def parse_net(text: str, path=None) -> pb.NetParameter:
    """Parse net prototxt text and upgrade it (see :func:`upgrade_net`).

    Also checks what Caffe checks for every layer when it builds the net from the file
    (Net::FilterNet: "Specify either include rules or exclude rules; not both."), so the
    error names the file, the line of the layer and the layer.
    """
    net = _parse_text(path, _rewrite_ceil_mode(text), pb.NetParameter())
    try:
        upgrade_net(net, path)
    except CaffeFormatError as exc:
        if exc.line is None and exc.layer is not None:
            raise CaffeFormatError(path, exc.reason, layer=exc.layer,
                                   line=_line_of_layer(text, exc.layer)) from None
        raise
    for layer in net.layer:
        if len(layer.include) and len(layer.exclude):
            raise CaffeFormatError(path, "specifies both include and exclude rules (Caffe: "
                                         "specify either include rules or exclude rules; not both)",
                                   layer=layer.name, line=_line_of_layer(text, layer.name))
    return net


def _line_of_layer(text: str, name: str) -> int | None:
    """1-based line of the first ``name: "<name>"`` in the text (None when not found)."""
    pattern = re.compile(r"""\bname\s*:\s*(["'])""" + re.escape(name) + r"\1")
    m = pattern.search(text)
    return text.count("\n", 0, m.start()) + 1 if m else None


def read_net(path) -> pb.NetParameter:
    """Read a net prototxt (new or V1 syntax), upgraded to the new ``layer`` representation."""
    return parse_net(_read_text(path), path)


def read_solver(path) -> pb.SolverParameter:
    """Read a solver prototxt; the deprecated ``solver_type`` enum becomes the ``type`` string."""
    solver = _parse_text(path, _read_text(path), pb.SolverParameter())
    return upgrade_solver(solver)


def upgrade_solver(solver: pb.SolverParameter) -> pb.SolverParameter:
    # Caffe's UpgradeSolverType: solver_type enum -> type string.
    if solver.HasField("solver_type"):
        names = {0: "SGD", 1: "Nesterov", 2: "AdaGrad", 3: "RMSProp", 4: "AdaDelta", 5: "Adam"}
        solver.type = names[solver.solver_type]
        solver.ClearField("solver_type")
    return solver


# ------------------------------------------------------------------ upgrades
def upgrade_net(net: pb.NetParameter, path=None) -> pb.NetParameter:
    """Apply Caffe's net upgrades in place and return ``net``.

    * V1 ``layers`` -> ``layer`` (enum type names to strings; ``blobs_lr``/``weight_decay``/
      ``param``/``blob_share_mode`` to ``param { lr_mult decay_mult name share_mode }``).
    * Deprecated transformation fields of ``data_param``/``image_data_param``/
      ``window_data_param`` (``scale``, ``mean_file``, ``crop_size``, ``mirror``) move to
      ``transform_param``.
    * Top-level ``input`` + ``input_dim``/``input_shape`` become a first layer named ``input``
      of type ``Input`` (Caffe's UpgradeNetInput).
    """
    if len(net.layers):
        if len(net.layer):
            raise CaffeFormatError(path, "net mixes V1 'layers' and new 'layer' fields")
        for v1 in net.layers:
            net.layer.append(_upgrade_v1_layer(v1, path))
        net.ClearField("layers")
    for layer in net.layer:
        _upgrade_data_transformation(layer)
    _upgrade_net_input(net, path)
    return net


def _upgrade_v1_layer(v1: pb.V1LayerParameter, path) -> pb.LayerParameter:
    if v1.HasField("layer"):
        raise CaffeFormatError(path, "V0 layer definitions are not supported", layer=v1.name or None)
    layer = pb.LayerParameter()
    layer.name = v1.name
    layer.bottom.extend(v1.bottom)
    layer.top.extend(v1.top)
    layer.include.extend(v1.include)
    layer.exclude.extend(v1.exclude)
    if v1.HasField("type"):
        layer.type = V1_TYPE_NAMES[pb.V1LayerParameter.LayerType.Name(v1.type)]
    layer.blobs.extend(v1.blobs)
    nparam = max(len(v1.param), len(v1.blob_share_mode), len(v1.blobs_lr), len(v1.weight_decay))
    for i in range(nparam):
        spec = layer.param.add()
        if i < len(v1.param):
            spec.name = v1.param[i]
        if i < len(v1.blob_share_mode):
            spec.share_mode = v1.blob_share_mode[i]
        if i < len(v1.blobs_lr):
            spec.lr_mult = v1.blobs_lr[i]
        if i < len(v1.weight_decay):
            spec.decay_mult = v1.weight_decay[i]
    layer.loss_weight.extend(v1.loss_weight)
    for field in _V1_COPIED:
        if v1.HasField(field):
            getattr(layer, field).CopyFrom(getattr(v1, field))
    return layer


def _upgrade_data_transformation(layer: pb.LayerParameter) -> None:
    for field in ("data_param", "image_data_param", "window_data_param"):
        if not layer.HasField(field):
            continue
        src, dst = getattr(layer, field), layer.transform_param
        for name in ("scale", "mean_file", "crop_size", "mirror"):
            if src.HasField(name):
                setattr(dst, name, getattr(src, name))
                src.ClearField(name)


def _upgrade_net_input(net: pb.NetParameter, path) -> None:
    if not len(net.input):
        if len(net.input_dim) or len(net.input_shape):
            raise CaffeFormatError(path, "input_dim/input_shape given without an 'input' name")
        return
    n = len(net.input)
    if len(net.input_shape) not in (0, n) or (len(net.input_dim) and len(net.input_dim) != 4 * n):
        raise CaffeFormatError(path, f"{n} input(s) need {n} input_shape or {4 * n} input_dim values, "
                                     f"got {len(net.input_shape)} / {len(net.input_dim)}")
    if len(net.input_shape) and len(net.input_dim):
        raise CaffeFormatError(path, "both input_shape and input_dim are given")
    layer = pb.LayerParameter(name="input", type="Input")
    layer.top.extend(net.input)
    for i in range(n):
        if len(net.input_shape):
            layer.input_param.shape.add().CopyFrom(net.input_shape[i])
        elif len(net.input_dim):
            layer.input_param.shape.add().dim.extend(net.input_dim[4 * i: 4 * i + 4])
    layers = [layer] + list(net.layer)
    net.ClearField("layer")
    net.layer.extend(layers)
    for field in ("input", "input_dim", "input_shape"):
        net.ClearField(field)


# ------------------------------------------------------------------ NetState rules
_PHASES = {"train": pb.TRAIN, "test": pb.TEST}


def make_state(phase="TEST", level: int = 0, stages: Iterable[str] = ()) -> pb.NetState:
    """A NetState from a phase name (``"train"``/``"test"``, any case) or enum value."""
    if isinstance(phase, str):
        try:
            phase = _PHASES[phase.lower()]
        except KeyError:
            raise ValueError(f"phase must be 'train' or 'test', got {phase!r}") from None
    state = pb.NetState(phase=phase, level=level)
    state.stage.extend(stages)
    return state


def state_meets_rule(state: pb.NetState, rule: pb.NetStateRule) -> bool:
    """Caffe's Net::StateMeetsRule: every condition present in the rule must hold."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    if any(stage not in state.stage for stage in rule.stage):
        return False
    if any(stage in state.stage for stage in rule.not_stage):
        return False
    return True


def layer_included(layer: pb.LayerParameter, state: pb.NetState) -> bool:
    """Caffe's Net::FilterNet for one layer: no rules -> in; any exclude met -> out; any include met -> in."""
    if len(layer.include) and len(layer.exclude):
        raise CaffeFormatError(None, "specifies both include and exclude rules", layer=layer.name)
    included = len(layer.include) == 0
    for rule in layer.exclude:
        if state_meets_rule(state, rule):
            included = False
    for rule in layer.include:
        if state_meets_rule(state, rule):
            included = True
    return included


def filter_net(net: pb.NetParameter, phase="TEST", level: int = 0, stages: Iterable[str] = ()
               ) -> pb.NetParameter:
    """The layers of ``net`` that Caffe instantiates in the given NetState (a new message).

    Caffe's state is the net's own ``state`` field with phase and level overridden and the
    stages added, as ``caffe.Net(proto, phase, level, stages)`` does.
    """
    state = pb.NetState()
    state.CopyFrom(net.state)
    wanted = make_state(phase, level, stages)
    # Net::Net(file, phase, level, stages): phase and level are set, stages added.
    state.phase = wanted.phase
    state.level = wanted.level
    state.stage.extend(wanted.stage)
    out = pb.NetParameter()
    out.CopyFrom(net)
    out.ClearField("layer")
    out.state.CopyFrom(state)
    for layer in net.layer:
        if layer_included(layer, state):
            out.layer.add().CopyFrom(layer)
    return out
