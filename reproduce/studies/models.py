"""The nets of the two follow-up studies, in plain torch (no torchvision).

Every model returns a dict ``task -> logits``: ``gender`` is one logit per image for the mtl2022
nets (sigmoid + BCE, 1 = female as the Adience lists) and two logits for the fusion2022 nets; the
other tasks are class logits (softmax + CE).

mtl2022 (Table 1 of the study, "reduced baseline"): 227x227 input,

    conv 24 7x7/1 valid -> 221, ReLU, max pool 3x3/2 (floor) -> 110, LRN
    conv 64 5x5/1       -> 106, ReLU, max pool -> 52, LRN
    conv 96 3x3/1       -> 50,  ReLU, max pool -> 24, LRN
    FC 128, ReLU, dropout 0.5, FC 128, ReLU, dropout 0.5, output

The pooling rounds down (Keras "valid" pooling; Caffe would round up: 221 -> 110 but 106 -> 53) and
LRN has no parameters (local size 5, alpha 1e-4, beta 0.75, k 1, across channels, as Levi-Hassner),
which gives exactly the published counts: gender 7,192,065, age 7,192,968 and multi-task
14,287,625 (shared conv trunk 97,408 + one FC branch per task).

fusion2022: ResNet-18/34/50 (He et al.), parameter names as torchvision's so that a state_dict
saved from torchvision loads here (``load_resnet_state``), with one linear softmax head per task.

Transfer learning (mtl2022): any Caffe net (``converters.load_caffe``) truncated at a named blob,
global average pooling, the two multi-task branches; only the last N backbone layers train.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from converters.errors import InputError

AGE_CLASSES = 8
LRN = dict(size=5, alpha=1e-4, beta=0.75, k=1.0)


class ModelError(ValueError, InputError):
    """A model or weights file that cannot be used (message names the file)."""


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _pool_out(n: int, k: int = 3, s: int = 2) -> int:
    return (n - k) // s + 1          # floor rounding


def trunk_size(input_size: int) -> int:
    """Spatial side after the Table 1 conv trunk (227 -> 24)."""
    n = input_size
    for k in (7, 5, 3):
        n = n - k + 1
        if n < 3:
            break
        n = _pool_out(n)
    if n < 1:
        raise ModelError(f"input size {input_size} is too small for the Table 1 net (needs >= 37)")
    return n


class ConvTrunk(nn.Sequential):
    """Table 1 conv part: 3 x (conv, ReLU, max pool 3x3/2 floor, LRN)."""

    def __init__(self, in_channels: int = 3):
        layers = []
        for i, (cin, cout, k) in enumerate(((in_channels, 24, 7), (24, 64, 5), (64, 96, 3)), start=1):
            layers += [(f"conv{i}", nn.Conv2d(cin, cout, k)), (f"relu{i}", nn.ReLU(inplace=True)),
                       (f"pool{i}", nn.MaxPool2d(3, 2, ceil_mode=False)), (f"norm{i}", nn.LocalResponseNorm(**LRN))]
        super().__init__(OrderedDict(layers))
        self.out_channels = 96


class Branch(nn.Sequential):
    """FC 128, ReLU, dropout 0.5, FC 128, ReLU, dropout 0.5, output."""

    def __init__(self, in_features: int, n_out: int, hidden: int = 128, dropout: float = 0.5):
        super().__init__(OrderedDict([
            ("fc1", nn.Linear(in_features, hidden)), ("relu1", nn.ReLU(inplace=True)), ("drop1", nn.Dropout(dropout)),
            ("fc2", nn.Linear(hidden, hidden)), ("relu2", nn.ReLU(inplace=True)), ("drop2", nn.Dropout(dropout)),
            ("out", nn.Linear(hidden, n_out))]))


def _head_out(task: str) -> int:
    return {"gender": 1, "age": AGE_CLASSES}[task]


class Table1Net(nn.Module):
    """The study's reduced baseline: ``tasks=("gender",)``, ``("age",)`` or ``("gender", "age")``
    (multi-task: shared trunk, one branch per task)."""

    def __init__(self, tasks=("gender", "age"), input_size: int = 227):
        super().__init__()
        self.tasks = tuple(tasks)
        self.input_size = input_size
        self.trunk = ConvTrunk()
        feat = self.trunk.out_channels * trunk_size(input_size) ** 2
        self.branches = nn.ModuleDict({t: Branch(feat, _head_out(t)) for t in self.tasks})

    def forward(self, x):
        f = torch.flatten(self.trunk(x), 1)
        return {t: self._squeeze(t, b(f)) for t, b in self.branches.items()}

    @staticmethod
    def _squeeze(task, out):
        return out[:, 0] if task == "gender" else out


MTL_MODELS = {"gender": ("gender",), "age": ("age",), "multitask": ("gender", "age")}


def mtl_model(kind: str, input_size: int = 227) -> Table1Net:
    return Table1Net(MTL_MODELS[kind], input_size)


def mtl_param_count(kind: str, input_size: int = 227) -> int:
    """Parameters of a Table 1 model without allocating them."""
    with torch.device("meta"):
        return count_params(mtl_model(kind, input_size))


# ---------------------------------------------------------------------------- transfer learning
INPUT_TYPES = ("Input", "Data", "ImageData", "MemoryData", "HDF5Data", "DummyData")


def truncate_net(net_param, blob: str):
    """The layers of a (filtered) Caffe ``NetParameter`` needed to compute ``blob``, as a new NetParameter."""
    from converters.proto import caffe_pb2 as pb

    layers = list(net_param.layer)
    last = max((i for i, layer in enumerate(layers) if blob in layer.top), default=None)
    if last is None:
        tops = [t for layer in layers for t in layer.top]
        raise ModelError(f"net {net_param.name!r} has no blob {blob!r} (blobs: {', '.join(dict.fromkeys(tops))})")
    needed, keep = {blob}, []
    for layer in reversed(layers[:last + 1]):
        if needed & set(layer.top):
            keep.append(layer)
            needed |= set(layer.bottom)
    keep.reverse()
    while keep and keep[-1].type == "Dropout" and list(keep[-1].top) == list(keep[-1].bottom):
        keep.pop()                              # dropout on the features belongs to the cut-off classifier
    out = pb.NetParameter()
    out.CopyFrom(net_param)
    del out.layer[:]
    out.layer.extend(keep)
    return out


def default_blob(net_param, input_name: str, input_size: int) -> str:
    """The net's last 4-D blob in layer order (Keras' ``include_top=False``): ``pool5`` of CaffeNet/VGG,
    ``pool5/7x7_s1`` of GoogLeNet (its auxiliary heads come earlier), ``pool5`` of the ResNets."""
    import converters

    shapes = converters.infer_shapes(net_param, {input_name: (1, 3, input_size, input_size)})
    best = None
    for layer in net_param.layer:
        for t in layer.top:
            if len(shapes.get(t, ())) == 4 and t != input_name:
                best = t
    if best is None:
        raise ModelError(f"net {net_param.name!r}: no 4-D blob; name the feature blob with --backbone-blob")
    return best


def load_backbone(prototxt, weights, blob: str | None, input_size: int):
    """A Caffe net (deploy prototxt + caffemodel, or a converted ``model.pt`` as ``weights``) truncated
    at ``blob`` (default: :func:`default_blob`) as a ``CaffeNet``; returns ``(net, blob, feature channels)``."""
    import warnings

    import converters
    from converters.formats import filter_net, read_net

    if prototxt is None:
        full = converters.load_converted(weights)
        blob = blob or default_blob(full.net_param, full.input_names[0], input_size)
        net = truncate_net(full.net_param, blob)
        model = converters.CaffeNet(net, {full.input_names[0]: (1, 3, input_size, input_size)})
        state = {k: v for k, v in full.state_dict().items() if k in model.state_dict()}
        model.load_state_dict(state, strict=True)
    else:
        full_net = filter_net(read_net(prototxt), "TEST")
        inputs = [t for layer in full_net.layer if layer.type in INPUT_TYPES for t in layer.top[:1]]
        if not inputs:
            raise ModelError(f"{prototxt}: the net has no input layer")
        blob = blob or default_blob(full_net, inputs[0], input_size)
        net = truncate_net(full_net, blob)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # checked below, with the file named
            model = converters.load_caffe(net, str(weights), phase="test",
                                          input_shapes={inputs[0]: (1, 3, input_size, input_size)})
        if model.missing_weights:
            raise ModelError(f"{weights}: no weights for backbone layer(s) {', '.join(model.missing_weights)} "
                             f"of {prototxt}")
    shape = model.blob_shapes.get(blob)
    if shape is None or len(shape) < 2:
        raise ModelError(f"blob {blob!r} has no usable shape ({shape})")
    return model, blob, int(shape[1])



class TransferNet(nn.Module):
    """Backbone (frozen except its last ``trainable_layers`` layers) -> global average pool -> one
    Table 1 FC branch per task.  Frozen layers stay in eval mode (BatchNorm statistics and dropout
    frozen, as Keras' ``trainable = False``)."""

    def __init__(self, backbone: nn.Module, channels: int, tasks=("gender", "age"), trainable_layers: int = 10):
        super().__init__()
        self.backbone = backbone
        self.tasks = tuple(tasks)
        self.branches = nn.ModuleDict({t: Branch(channels, _head_out(t)) for t in self.tasks})
        self.frozen: list[nn.Module] = []
        self.trainable_layer_names: list[str] = []
        self.freeze(trainable_layers)

    def backbone_layers(self) -> list[tuple[str, nn.Module]]:
        layers = getattr(self.backbone, "caffe_layers", None)
        if layers is None:
            return list(self.backbone.named_children())
        types = {layer.name: layer.type for layer in self.backbone.net_param.layer}
        return [(n, m) for n, m in layers.items() if types.get(n.split("#")[0]) not in INPUT_TYPES]

    def freeze(self, trainable_layers: int) -> None:
        """The last ``trainable_layers`` backbone layers (all layer types count, as Keras' layer
        list) train; every earlier one is frozen."""
        layers = self.backbone_layers()
        n = max(0, min(int(trainable_layers), len(layers)))
        cut = len(layers) - n
        self.frozen = []
        for i, (name, module) in enumerate(layers):
            train = i >= cut
            for p in module.parameters():
                p.requires_grad_(train)
            if not train:
                self.frozen.append(module)
        self.trainable_layer_names = [name for name, _ in layers[cut:]]

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.frozen:
            m.eval()
        return self

    def forward(self, x):
        f = self.backbone(x)
        if isinstance(f, dict):
            (f,) = f.values()
        if f.dim() == 4:
            f = f.mean((2, 3))
        f = torch.flatten(f, 1)
        return {t: Table1Net._squeeze(t, b(f)) for t, b in self.branches.items()}


# ---------------------------------------------------------------------------- ResNet
def _conv3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = _conv3(cin, planes, stride), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv3(planes, planes), nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv3(planes, planes, stride), nn.BatchNorm2d(planes)   # stride on the 3x3 (v1.5)
        self.conv3, self.bn3 = nn.Conv2d(planes, planes * 4, 1, bias=False), nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + idt)


RESNETS = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet34": (BasicBlock, (3, 4, 6, 3)),
           "resnet50": (Bottleneck, (3, 4, 6, 3))}


class ResNet(nn.Module):
    """ResNet feature extractor (no ``fc``); names as torchvision (conv1, bn1, layer1.0.conv1, ...).
    ``width`` scales the channels (64 = the standard nets; smaller only for tests)."""

    def __init__(self, arch: str = "resnet34", width: int = 64):
        super().__init__()
        if arch not in RESNETS:
            raise ModelError(f"unknown ResNet {arch!r}; expected one of {', '.join(RESNETS)}")
        block, counts = RESNETS[arch]
        self.arch, self.width = arch, width
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = width
        for i, n in enumerate(counts):
            planes, stride = width * 2 ** i, 1 if i == 0 else 2
            down = None
            if stride != 1 or cin != planes * block.expansion:
                down = nn.Sequential(nn.Conv2d(cin, planes * block.expansion, 1, stride, bias=False),
                                     nn.BatchNorm2d(planes * block.expansion))
            blocks = [block(cin, planes, stride, down)]
            cin = planes * block.expansion
            blocks += [block(cin, planes) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.out_features = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(x.mean((2, 3)), 1)


class MultiHeadResNet(nn.Module):
    """ResNet + one linear softmax head per task (``heads``: task -> number of classes)."""

    def __init__(self, heads: dict, arch: str = "resnet34", width: int = 64):
        super().__init__()
        self.backbone = ResNet(arch, width)
        self.heads = nn.ModuleDict({t: nn.Linear(self.backbone.out_features, n) for t, n in heads.items()})
        self.tasks = tuple(heads)

    def forward(self, x):
        f = self.backbone(x)
        return {t: h(f) for t, h in self.heads.items()}


def load_resnet_state(backbone: ResNet, path) -> list[str]:
    """Load a torchvision-style ResNet state_dict file into ``backbone`` (``fc.*`` dropped; ``module.``
    and ``backbone.`` prefixes and a ``{"state_dict": ...}`` wrapper accepted).  Returns the keys
    ignored.  Raises :class:`ModelError` naming the file on missing keys or shape mismatches."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"{path}: weights file not found") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise ModelError(f"{path}: not a torch state_dict file ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path}: expected a state_dict (parameter name -> tensor), got {type(obj).__name__}")
    state, ignored = {}, []
    for k, v in obj.items():
        name = k
        for prefix in ("module.", "backbone."):
            if name.startswith(prefix):
                name = name[len(prefix):]
        if name.startswith("fc.") or name.startswith("heads."):
            ignored.append(k)
            continue
        state[name] = v
    own = backbone.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ModelError(f"{path}: not a {backbone.arch} (width {backbone.width}) state_dict: "
                         f"{len(missing)} missing key(s) (e.g. {missing[:3]}), {len(unexpected)} unexpected "
                         f"(e.g. {unexpected[:3]})")
    bad = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if state[k].shape != v.shape]
    if bad:
        raise ModelError(f"{path}: shape mismatch for {len(bad)} tensor(s), e.g. {bad[0]} (file vs {backbone.arch})")
    backbone.load_state_dict(state, strict=True)
    return ignored
