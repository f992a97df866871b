"""Benchmark: training iterations per second of AdienceNet (full size) on CPU.

Our ``converters.solver.Solver`` (Caffe semantics: SGD + momentum + weight decay, lr_mult/decay_mult,
net converted by ``converters.load_caffe``) against a plain PyTorch training step of the same
architecture (``nn.Sequential`` + ``torch.optim.SGD``), both on synthetic in-memory batches of
50 x 3 x 227 x 227 with ``torch.set_num_threads(2)``.  Printed beside the reference numbers
for real Caffe 1.0 (1.90 s/iteration) and plain PyTorch (1.08 s/iteration); goal: >= 2x Caffe.

The net is the upstream ``age_net_definitions/train_val_test_fold_is_0.prototxt`` (V1 syntax; its
LMDB Data layers are replaced by the synthetic batches) when it is found, otherwise the same
structure written out below.

The two are timed interleaved (one iteration each, in turn) so that both see the same machine load;
medians (and the best iteration, least disturbed by other load) are reported.

Usage: ``python benchmarks/train.py [--iters 5] [--warmup 2] [--threads 2] [--prototxt PATH]``
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from converters.formats import parse_net, read_net  # noqa: E402
from converters.proto import caffe_pb2 as pb  # noqa: E402
from converters.solver import Solver  # noqa: E402

CAFFE_S_PER_ITER = 1.90
TORCH_REF_S_PER_ITER = 1.08
BATCH, CLASSES = 50, 8


def _default_prototxt() -> Path:
    upstream = Path(os.environ.get("UPSTREAM_DIR", REPO.parent / "shared" / "upstream")) / "lapuschkin-2017"
    return upstream / "model_definitions" / "age_net_definitions" / "train_val_test_fold_is_0.prototxt"


def _conv(name, bottom, n, k, stride=1, pad=0, std=0.01, bias=0.0):
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" '
            f'param {{ lr_mult: 1 decay_mult: 1 }} param {{ lr_mult: 2 decay_mult: 0 }} '
            f'convolution_param {{ num_output: {n} kernel_size: {k} stride: {stride} pad: {pad} '
            f'weight_filler {{ type: "gaussian" std: {std} }} bias_filler {{ type: "constant" value: {bias} }} }} }}\n')


def _fc(name, bottom, n, std, bias, lr=(1, 2)):
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{name}" '
            f'param {{ lr_mult: {lr[0]} decay_mult: 1 }} param {{ lr_mult: {lr[1]} decay_mult: 0 }} '
            f'inner_product_param {{ num_output: {n} weight_filler {{ type: "gaussian" std: {std} }} '
            f'bias_filler {{ type: "constant" value: {bias} }} }} }}\n')


def _relu(name, blob):
    return f'layer {{ name: "{name}" type: "ReLU" bottom: "{blob}" top: "{blob}" }}\n'


def _pool(name, bottom):
    return (f'layer {{ name: "{name}" type: "Pooling" bottom: "{bottom}" top: "{name}" '
            f'pooling_param {{ pool: MAX kernel_size: 3 stride: 2 }} }}\n')


def _lrn(name, bottom):
    return (f'layer {{ name: "{name}" type: "LRN" bottom: "{bottom}" top: "{name}" '
            f'lrn_param {{ local_size: 5 alpha: 0.0001 beta: 0.75 }} }}\n')


def adiencenet_text() -> str:
    """AdienceNet (Levi & Hassner) train net, written out (same structure as the upstream file)."""
    return ('name: "AdienceNet"\n'
            'layer { name: "data" type: "Input" top: "data" top: "label" }\n'
            + _conv("conv1", "data", 96, 7, stride=4) + _relu("relu1", "conv1") + _pool("pool1", "conv1")
            + _lrn("norm1", "pool1")
            + _conv("conv2", "norm1", 256, 5, pad=2, bias=1.0) + _relu("relu2", "conv2") + _pool("pool2", "conv2")
            + _lrn("norm2", "pool2")
            + _conv("conv3", "norm2", 384, 3, pad=1) + _relu("relu3", "conv3") + _pool("pool5", "conv3")
            + _fc("fc6", "pool5", 512, 0.005, 1.0) + _relu("relu6", "fc6")
            + 'layer { name: "drop6" type: "Dropout" bottom: "fc6" top: "fc6" dropout_param { dropout_ratio: 0.5 } }\n'
            + _fc("fc7", "fc6", 512, 0.005, 1.0) + _relu("relu7", "fc7")
            + 'layer { name: "drop7" type: "Dropout" bottom: "fc7" top: "fc7" dropout_param { dropout_ratio: 0.5 } }\n'
            + _fc("fc8", "fc7", CLASSES, 0.01, 0.0, lr=(10, 20))
            + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc8" bottom: "label" top: "loss" }\n')


def solver_param(net: pb.NetParameter) -> pb.SolverParameter:
    """The upstream AdienceNet solver settings (no testing, no snapshots)."""
    s = pb.SolverParameter(base_lr=0.001, lr_policy="step", gamma=0.1, stepsize=10000, momentum=0.9,
                           weight_decay=0.0005, max_iter=10 ** 6, display=0, snapshot=0,
                           snapshot_after_train=False, random_seed=1, type="SGD")
    s.net_param.CopyFrom(net)
    return s


def synthetic_batches(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, 3, 227, 227, generator=g) * 40
    y = torch.randint(0, CLASSES, (BATCH,), generator=g).float()
    return lambda: {"data": x, "label": y}


def ours_step(net_param, channels_last=True, device=None):
    """One training iteration of our Solver (a zero-argument callable); ``device`` as Solver's."""
    solver = Solver(solver_param(net_param), train_data=synthetic_batches(), progress=False, verbose=False,
                    log_csv=False, plot=False, channels_last=channels_last, device=device)
    return lambda: solver.step(1)


class PlainAdienceNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 96, 7, stride=4)
        self.conv2 = nn.Conv2d(96, 256, 5, padding=2)
        self.conv3 = nn.Conv2d(256, 384, 3, padding=1)
        self.fc6 = nn.Linear(384 * 7 * 7, 512)
        self.fc7 = nn.Linear(512, 512)
        self.fc8 = nn.Linear(512, CLASSES)
        self.lrn = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        for m in (self.conv1, self.conv2, self.conv3, self.fc8):
            nn.init.normal_(m.weight, std=0.01)
        for m in (self.fc6, self.fc7):
            nn.init.normal_(m.weight, std=0.005)
            nn.init.constant_(m.bias, 1.0)
        for m in (self.conv1, self.conv3, self.fc8):
            nn.init.zeros_(m.bias)
        nn.init.constant_(self.conv2.bias, 1.0)

    def forward(self, x):
        x = self.lrn(F.max_pool2d(F.relu(self.conv1(x)), 3, 2, ceil_mode=True))
        x = self.lrn(F.max_pool2d(F.relu(self.conv2(x)), 3, 2, ceil_mode=True))
        x = F.max_pool2d(F.relu(self.conv3(x)), 3, 2, ceil_mode=True)
        x = F.dropout(F.relu(self.fc6(x.flatten(1))), 0.5, self.training)
        x = F.dropout(F.relu(self.fc7(x)), 0.5, self.training)
        return self.fc8(x)


def plain_step(device="cpu"):
    """One plain PyTorch SGD step of the same architecture (a zero-argument callable)."""
    torch.manual_seed(1)
    model = PlainAdienceNet().train().to(device)
    groups = []
    for name, p in model.named_parameters():
        mult = (10 if name.startswith("fc8") else 1) * (2 if name.endswith("bias") else 1)
        groups.append({"params": [p], "lr": 0.001 * mult, "weight_decay": 0.0 if name.endswith("bias") else 0.0005})
    opt = torch.optim.SGD(groups, lr=0.001, momentum=0.9)
    batch = synthetic_batches()()
    x, y = batch["data"].to(device), batch["label"].long().to(device)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return step


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prototxt", type=Path, default=_default_prototxt())
    ap.add_argument("--skip-plain", action="store_true")
    ap.add_argument("--nchw", action="store_true",
                    help="also time Solver(channels_last=False) (torch's default layout)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="run both training steps on this device (cuda: TF32 off, as Caffe's float32)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = None if args.device == "cpu" else args.device
    if device == "cuda":
        if not torch.cuda.is_available():
            print("benchmarks/train.py: --device cuda skipped: CUDA is not available to PyTorch")
            return 0
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False

    if args.prototxt.is_file():
        net = read_net(args.prototxt)
        source = str(args.prototxt)
    else:
        net = parse_net(adiencenet_text())
        source = "built-in AdienceNet definition (upstream prototxt not found)"
    print(f"net: {source}")
    print(f"batch {BATCH}x3x227x227, device {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{args.warmup} warm-up + {args.iters} timed iterations")

    # Interleaved (ours, plain, ours, plain, ...) so that both see the same machine load.
    steps = {"ours": ours_step(net, device=device)}
    if args.nchw:
        steps["ours_nchw"] = ours_step(net, channels_last=False, device=device)
    if not args.skip_plain:
        steps["plain"] = plain_step(args.device)
    for _ in range(args.warmup):
        for fn in steps.values():
            fn()
    times = {k: [] for k in steps}
    for _ in range(args.iters):
        for k, fn in steps.items():
            times[k].append(timed(fn))
    ours, plain = times["ours"], times.get("plain")

    def row(label, s, best=None):
        extra = f" {best:8.3f} |" if best is not None else f" {'':8} |"
        return f"| {label:<40} | {s:8.3f} | {1 / s:6.3f} | {CAFFE_S_PER_ITER / s:7.2f}x |" + extra

    print()
    print(f"| {'training step (AdienceNet, batch 50)':<40} | s/iter   | it/s   | vs Caffe | best s   |")
    print(f"|{'-' * 42}|----------|--------|----------|----------|")
    print(row("real Caffe 1.0 (reference)", CAFFE_S_PER_ITER))
    print(row("plain PyTorch (reference)", TORCH_REF_S_PER_ITER))
    if plain:
        print(row("plain PyTorch SGD step (measured here)", statistics.median(plain), min(plain)))
    med = statistics.median(ours)
    print(row("converters.solver.Solver (measured here)", med, min(ours)))
    if "ours_nchw" in times:
        print(row("Solver(channels_last=False) (measured)", statistics.median(times["ours_nchw"]),
                  min(times["ours_nchw"])))
    print()
    if plain:
        print(f"plain per iteration: {', '.join(f'{t:.3f}' for t in plain)} s")
        print(f"ours / plain PyTorch (same machine, interleaved): {med / statistics.median(plain):.2f}")
    print(f"ours per iteration: {', '.join(f'{t:.3f}' for t in ours)} s; goal >= 2x Caffe "
          f"(<= {CAFFE_S_PER_ITER / 2:.2f} s/iter): {'met' if med <= CAFFE_S_PER_ITER / 2 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
