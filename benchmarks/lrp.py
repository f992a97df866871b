#!/usr/bin/env python
"""LRP heatmap cost vs a plain forward + backward pass, on the full-size VGG-16 (random weights).

    python benchmarks/lrp.py [--deploy PATH] [--repeat 3] [--threads N] [--flat-upto 9] [--json OUT]

The net is the upstream ``age_finetuning_vgg16/deploy.prototxt`` (``$UPSTREAM_DIR`` or
``../shared/upstream/lapuschkin-2017``) with He-normal weights and N(0, 0.1) biases, input
uniform in [-120, 140) (mean-subtracted pixels).  Timed, best of ``--repeat`` after one warm-up:

* ``forward``: ``model(x)`` under ``torch.no_grad()``;
* ``forward+backward (input)``: the class score's gradient w.r.t. the input only (parameters frozen);
* ``forward+backward (all)``: the same with the parameters' gradients too (PyTorch's default);
* ``lrp``: :func:`converters.lrp.explain` with the paper composite (flat up to Caffe layer 9).

The four are timed round-robin, best of ``--repeat`` rounds each, so that a busy machine slows all
of them alike.  Target: ``lrp <= 3 x forward+backward``.  Prints one table; ``--json`` writes the
numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

DEFAULT_DEPLOY = Path(os.environ.get("UPSTREAM_DIR", ROOT.parent / "shared" / "upstream")) / \
    "lapuschkin-2017" / "model_definitions" / "age_finetuning_vgg16" / "deploy.prototxt"
if not DEFAULT_DEPLOY.is_file():
    DEFAULT_DEPLOY = Path(os.environ.get("UPSTREAM_DIR", ROOT.parent / "shared" / "upstream")) / \
        "model_definitions" / "age_finetuning_vgg16" / "deploy.prototxt"


def random_weights(model, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, i, p, _, _ in model.param_specs():
            if i == 0 and p.dim() > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def best_of(fns: dict, repeat: int) -> dict:
    """Best wall time of each function over ``repeat`` rounds, the functions interleaved round-robin
    (so a busy machine slows all of them alike); one warm-up round first."""
    for fn in fns.values():
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--deploy", default=str(DEFAULT_DEPLOY))
    p.add_argument("--exact-forward", action="store_true", help="explain with exact_forward=True")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--flat-upto", type=int, default=9)
    p.add_argument("--json", help="also write the numbers here")
    args = p.parse_args(argv)
    if not Path(args.deploy).is_file():
        print(f"lrp benchmark: {args.deploy} not found (set UPSTREAM_DIR or --deploy)", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)

    import converters
    from converters.lrp import explain, paper_composite

    model = converters.load_caffe(args.deploy).eval()
    random_weights(model)
    g = torch.Generator().manual_seed(1)
    shape = next(iter(model.input_shapes.values()))
    x = torch.rand((1,) + tuple(shape[1:]), generator=g) * 260.0 - 120.0
    # the pre-softmax score of the class to explain (the input of the output Softmax)
    composite = paper_composite(flat_upto=args.flat_upto, eps=0.1)
    start = next(layer.name for layer in reversed(model.net_param.layer) if layer.type == "InnerProduct")
    target = int(explain(model, x, "predicted", composite).record["classes"][0])

    def score(inp):
        return model.forward_blobs({model.input_names[0]: inp})[
            next(layer.top[0] for layer in model.net_param.layer if layer.name == start)][0, target]

    def forward():
        with torch.no_grad():
            model(x)

    def fwd_bwd_input():
        for q in model.parameters():
            q.requires_grad_(False)
        xi = x.clone().requires_grad_(True)
        torch.autograd.grad(score(xi), xi)
        for q in model.parameters():
            q.requires_grad_(True)

    def fwd_bwd_all():
        xi = x.clone().requires_grad_(True)
        model.zero_grad(set_to_none=True)
        score(xi).backward()

    def lrp():
        explain(model, x, target, composite, exact_forward=args.exact_forward)

    res = {"net": str(args.deploy), "input": list(x.shape), "threads": torch.get_num_threads(),
           "torch": torch.__version__}
    best = best_of({"forward_s": forward, "fwd_bwd_input_s": fwd_bwd_input, "fwd_bwd_all_s": fwd_bwd_all,
                    "lrp_s": lrp}, args.repeat)
    res.update(best)
    res["lrp_over_fwd_bwd_input"] = res["lrp_s"] / res["fwd_bwd_input_s"]
    res["lrp_over_fwd_bwd_all"] = res["lrp_s"] / res["fwd_bwd_all_s"]
    res["target_met"] = res["lrp_s"] <= 3.0 * res["fwd_bwd_input_s"]
    print(f"VGG-16 {tuple(x.shape)}, {res['threads']} threads, torch {torch.__version__}")
    print(f"  forward                    {res['forward_s']:8.3f} s")
    print(f"  forward+backward (input)   {res['fwd_bwd_input_s']:8.3f} s")
    print(f"  forward+backward (all)     {res['fwd_bwd_all_s']:8.3f} s")
    print(f"  LRP heatmap (paper rules)  {res['lrp_s']:8.3f} s   = {res['lrp_over_fwd_bwd_input']:.2f} x fwd+bwd(input),"
          f" {res['lrp_over_fwd_bwd_all']:.2f} x fwd+bwd(all)  (target <= 3x: "
          f"{'met' if res['target_met'] else 'NOT met'})")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
