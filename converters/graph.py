"""The execution plan of a Caffe net: which layer reads and writes which blob, in Caffe's order.

What it owns: Caffe's net-assembly rules (Net::Init, insert_splits.cpp, Net::AppendParam) as data,
once, for every walker of a net: ``CaffeNet``'s forward, the pycaffe facade's forward and backward,
the ONNX export and the LRP walk all iterate :attr:`ExecutionPlan.steps`.

* Layers run in prototxt order (of a net already filtered for its NetState).
* **Versioned blobs.** Every write of a blob is a new *version* (an int); a layer reads the
  current version of each bottom name.  A top equal to the bottom at the same index is in-place
  (Caffe: "the top blob is the bottom blob"): the name gets a new version, so a ReLU's bottom
  version is the convolution's output and its top version the rectified values.  Any other top
  whose name already exists is an error ("produced by multiple sources", Caffe's
  ``Duplicate blobs produced by multiple sources``).
* **Implicit Split.** A blob version read by several layers is what Caffe copies with an
  automatically inserted ``Split`` layer (insert_splits.cpp); :meth:`ExecutionPlan.consumers`
  counts the readers, and :meth:`ExecutionPlan.caffe_layer_indices` numbers the layers as Caffe
  does after inserting the splits (a split right after the layer whose top it copies; the splits
  of the net's ``input:`` blobs first).
* **Automatic tops.** Caffe's ``AutoTopBlobs``: a loss layer written without a ``top`` still gets
  one (:func:`with_automatic_tops`).
* **Outputs**: the blob names not read by a later layer, sorted (Caffe keeps them in a std::set).
* **Loss weights**: a ``*Loss`` layer's top 0 weighs 1 unless ``loss_weight`` says otherwise.
* **Parameter sharing** (Net::AppendParam): :func:`plan_params` turns the layers' ``param {}``
  entries into :class:`LearnableParam` records, the first blob of a ``name`` owning it.

It knows nothing of torch modules or tensors; the walkers attach those.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .layers import ConversionError, is_input_type
from .proto import caffe_pb2 as pb

LOSS_SUFFIX = "Loss"
AUTO_TOP = "(automatic)"


def with_automatic_tops(net_param: pb.NetParameter) -> pb.NetParameter:
    """Caffe's ``AutoTopBlobs``: a loss layer written without a ``top`` still gets one (an anonymous
    blob Caffe names ``(automatic)``), so its loss counts (the VGG train_vals' ``loss`` layer).
    Returns ``net_param`` itself when no layer needs one, else a copy with the tops spelled out."""
    needs = [i for i, layer in enumerate(net_param.layer)
             if not len(layer.top) and layer.type.endswith(LOSS_SUFFIX)]
    if not needs:
        return net_param
    out = pb.NetParameter()
    out.CopyFrom(net_param)
    for n, i in enumerate(needs):
        out.layer[i].top.append(AUTO_TOP if n == 0 else f"{AUTO_TOP}#{n + 1}")
    return out


@dataclass(frozen=True)
class Step:
    """One layer of the plan.

    ``position`` is the layer's place in ``net_param.layer`` (and in the plan); ``name`` its
    prototxt name, ``unique_name`` the same made unique (``name#2`` for a repeated name);
    ``bottoms``/``tops`` are blob names, ``bottom_versions``/``top_versions`` the blob versions
    read and written; ``frees`` the blob names no later step reads (a forward pass may drop them
    after this step unless they are outputs).
    """

    position: int
    name: str
    unique_name: str
    type: str
    layer: pb.LayerParameter = field(repr=False, compare=False)
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    bottom_versions: tuple[int, ...]
    top_versions: tuple[int, ...]
    is_input: bool
    frees: tuple[str, ...] = ()

    def in_place(self, top_index: int) -> bool:
        """Caffe's in-place rule: top ``i`` is the bottom ``i`` blob."""
        return top_index < len(self.bottoms) and self.bottoms[top_index] == self.tops[top_index]


class ExecutionPlan:
    """The steps of a (filtered) Caffe net over versioned blobs; see the module docstring.

    Attributes: ``net_param`` (with automatic tops), ``steps``, ``blob_of`` (version -> blob name),
    ``inputs`` (input blob name -> version, in order), ``outputs`` (sorted names), ``loss_weights``
    (blob name -> weight, nonzero only), ``final_version`` (blob name -> its last version).
    """

    def __init__(self, net_param: pb.NetParameter):
        self.net_param = net_param = with_automatic_tops(net_param)
        self.blob_of: list[str] = []
        self.inputs: dict[str, int] = {}
        self.loss_weights: dict[str, float] = {}
        version: dict[str, int] = {}
        available: dict[str, None] = {}
        steps = []
        seen_names: set[str] = set()
        for pos, layer in enumerate(net_param.layer):
            bottoms = tuple(layer.bottom)
            for i, b in enumerate(bottoms):
                if b not in version:
                    raise ConversionError(layer, f"unknown bottom blob '{b}' (bottom index {i})")
            for i, t in enumerate(layer.top):
                in_place = i < len(bottoms) and bottoms[i] == t
                if t in version and not in_place:
                    raise ConversionError(layer, f"top blob '{t}' produced by multiple sources")
            is_input = is_input_type(layer.type)
            bottom_versions = tuple(version[b] for b in bottoms)
            top_versions = []
            for t in layer.top:
                version[t] = len(self.blob_of)
                top_versions.append(version[t])
                self.blob_of.append(t)
                if is_input:
                    self.inputs[t] = version[t]
            name = layer.name
            if name in seen_names:
                k = 2
                while f"{name}#{k}" in seen_names:
                    k += 1
                name = f"{name}#{k}"
            seen_names.add(name)
            for b in bottoms:
                available.pop(b, None)
            for t in layer.top:
                available[t] = None
            self._add_loss_weights(layer)
            steps.append(Step(pos, layer.name, name, layer.type, layer, () if is_input else bottoms,
                              tuple(layer.top), () if is_input else bottom_versions, tuple(top_versions),
                              is_input))
        self.final_version = version
        self.outputs: list[str] = sorted(available)
        self.steps: list[Step] = self._with_frees(steps)

    def _add_loss_weights(self, layer):
        if len(layer.loss_weight) and len(layer.loss_weight) != len(layer.top):
            raise ConversionError(layer, f"loss_weight must be unspecified or specified once per top blob "
                                         f"({len(layer.top)}), got {len(layer.loss_weight)}")
        for i, t in enumerate(layer.top):
            if len(layer.loss_weight):
                w = float(layer.loss_weight[i])
            else:
                w = 1.0 if (layer.type.endswith(LOSS_SUFFIX) and i == 0) else 0.0
            if w != 0.0:
                self.loss_weights[t] = w

    def _with_frees(self, steps: list[Step]) -> list[Step]:
        last_read: dict[str, int] = {}
        for i, step in enumerate(steps):
            for b in step.bottoms:
                last_read[b] = i
        keep = set(self.outputs)
        out = []
        for i, step in enumerate(steps):
            frees = tuple(b for b in dict.fromkeys(step.bottoms)
                          if last_read.get(b) == i and b not in step.tops and b not in keep)
            out.append(Step(**{**step.__dict__, "frees": frees}))
        return out

    # ------------------------------------------------------------------ queries
    @property
    def n_versions(self) -> int:
        return len(self.blob_of)

    def consumers(self) -> dict[int, int]:
        """Blob version -> how many layers read it (more than one: Caffe inserts a Split)."""
        count: dict[int, int] = {}
        for step in self.steps:
            for v in step.bottom_versions:
                count[v] = count.get(v, 0) + 1
        return count

    def producer(self) -> dict[int, Step]:
        """Blob version -> the step that writes it."""
        return {v: step for step in self.steps for v in step.top_versions}

    def caffe_layer_indices(self, inputs_as_layers: bool = True) -> list[int | None]:
        """Per step: its index in Caffe's layer list after insert_splits.cpp.

        A split follows the layer whose top is read by several layers.  With
        ``inputs_as_layers=False`` the input layers are not counted (None): the numbering of the
        2015 Caffe of ``lrp_toolbox``, where inputs were the net's ``input:`` fields, whose splits
        Caffe puts before every layer.  (Caffe also counts a loss-weighted top as one more reader;
        the nets numbered here have no consumed loss tops.)
        """
        readers = self.consumers()

        def splits(step):
            return sum(1 for v in step.top_versions if readers.get(v, 0) > 1)

        index = 0
        out: list[int | None] = [None] * len(self.steps)
        if not inputs_as_layers:
            index = sum(splits(s) for s in self.steps if s.is_input)
        for step in self.steps:
            if step.is_input and not inputs_as_layers:
                continue
            out[step.position] = index
            index += 1 + splits(step)
        return out

    def ancestors(self, position: int, also_types: tuple[str, ...] = ()) -> list[Step]:
        """The non-input steps up to ``position`` that the step at ``position`` depends on (itself
        included), in order; steps of a type in ``also_types`` below it are kept too, with what they
        depend on (the LRP toolbox visits e.g. every Softmax below its start layer)."""
        needed = set(self.steps[position].top_versions)
        kept = []
        for step in reversed(self.steps[:position + 1]):
            if step.is_input:
                continue
            if needed.intersection(step.top_versions) or (step.position != position and step.type in also_types):
                kept.append(step)
                needed.update(step.bottom_versions)
        kept.reverse()
        return kept

    def position_of(self, layer_name: str) -> int:
        """The position of the (first) layer called ``layer_name``; KeyError if none."""
        for step in self.steps:
            if step.name == layer_name:
                return step.position
        raise KeyError(layer_name)

    def __len__(self):
        return len(self.steps)

    def __iter__(self):
        return iter(self.steps)

    def __repr__(self):
        return (f"<ExecutionPlan {self.net_param.name!r}: {len(self.steps)} layers, {len(self.blob_of)} blob "
                f"versions, inputs {list(self.inputs)}, outputs {self.outputs}>")


# ---------------------------------------------------------------------------- parameters
@dataclass
class LearnableParam:
    """One learnable blob in Caffe's learnable-param order (Net::AppendParam).

    ``layer`` is the owning step's unique name, ``blob_index`` the blob's index in that layer,
    ``position`` the step's position; ``lr_mult``/``decay_mult`` the effective multipliers
    (``has_lr``/``has_decay``: set explicitly, which a sharer must then agree with).
    ``shared_by`` lists the ``(position, blob_index)`` of the blobs that use this one's memory
    (Caffe's ``param { name: ... }``), ``share_name`` the name; ``strict`` per sharer is in
    :class:`ParamShare`.
    """

    layer: str
    blob_index: int
    position: int
    lr_mult: float
    decay_mult: float
    has_lr: bool
    has_decay: bool
    share_name: str = ""
    shared_by: list = field(default_factory=list)


@dataclass(frozen=True)
class ParamShare:
    """A blob that uses the memory of ``owner`` (an index into the learnable params):
    ``position``/``blob_index`` of the sharer, ``strict`` unless ``share_mode: PERMISSIVE``."""

    position: int
    blob_index: int
    owner: int
    name: str
    strict: bool


def plan_params(plan: ExecutionPlan, blob_counts, lr_defaults) -> tuple[list[LearnableParam], list[ParamShare]]:
    """Caffe's AppendParam over the plan.

    ``blob_counts[position]`` is how many learnable blobs the layer has; ``lr_defaults[position]``
    a sequence with, per blob, the converter's default ``lr_mult`` (None: Caffe's 1.0).  Returns the
    learnable params (owners only, in Caffe's order) and the sharing records; a shared param's
    ``lr_mult``/``decay_mult`` given on both sides must agree (ConversionError otherwise).
    """
    owners: dict[str, int] = {}
    params: list[LearnableParam] = []
    shares: list[ParamShare] = []
    for step in plan.steps:
        layer = step.layer
        for i in range(blob_counts[step.position]):
            spec = layer.param[i] if i < len(layer.param) else None
            default_lr = lr_defaults[step.position][i]
            lr = spec.lr_mult if spec is not None and spec.HasField("lr_mult") else (
                default_lr if default_lr is not None else 1.0)
            decay = spec.decay_mult if spec is not None else 1.0
            has_lr = (spec is not None and spec.HasField("lr_mult")) or default_lr is not None
            has_decay = spec is not None and spec.HasField("decay_mult")
            pname = spec.name if spec is not None else ""
            if not pname or pname not in owners:
                if pname:
                    owners[pname] = len(params)
                params.append(LearnableParam(step.unique_name, i, step.position, lr, decay, has_lr, has_decay,
                                             pname))
                continue
            owner = params[owners[pname]]
            shares.append(ParamShare(step.position, i, owners[pname], pname,
                                     spec.share_mode != pb.ParamSpec.PERMISSIVE))
            owner.shared_by.append((step.position, i))
            if spec.HasField("lr_mult"):
                if owner.has_lr and owner.lr_mult != spec.lr_mult:
                    raise ConversionError(layer, f"shared param '{pname}' has mismatched lr_mult")
                owner.lr_mult, owner.has_lr = spec.lr_mult, True
            if spec.HasField("decay_mult"):
                if owner.has_decay and owner.decay_mult != spec.decay_mult:
                    raise ConversionError(layer, f"shared param '{pname}' has mismatched decay_mult")
                owner.decay_mult, owner.has_decay = spec.decay_mult, True
    return params, shares
