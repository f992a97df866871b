"""Study ``fusion2022``: end-to-end vs gender-specific fusion ResNets for gender, age group and race.

    run.py --study fusion2022 --list
    run.py --study fusion2022 --fairface DIR [--utkface DIR] --init resnet34.pth [--arch resnet34]
           [--row end2end,fusion] [--epochs N] --out DIR

* **end2end**: one ResNet (``--arch``, weights from ``--init``: a torchvision-style state_dict, or
  ``scratch``) with three softmax heads (gender 2, age 9 groups, race 7 on FairFace / 5 on UTKFace),
  loss = the sum of the three cross-entropies.
* **fusion**: a gender classifier (same ResNet, one head), then a male and a female age+race
  classifier, each trained on its gender's part of the training set repeated back to the full
  training-set size (whole copies + a seeded random remainder; the random augmentation makes the
  copies differ); at inference the predicted gender routes each image to one of the two.
* Training (as the study): Adam lr 2e-4, batch 32, up to 30 epochs, early stopping patience 5 on
  the validation loss (best weights kept), learning rate x0.1 after 2 epochs without improvement
  (ReduceLROnPlateau); 224x224 input, augmentation random crop (of the image squashed to 256x256),
  horizontal flip and brightness x[0.8, 1.2]; ImageNet normalisation (RGB).
* Splits: FairFace: ``fairface_label_train.csv`` minus a seeded 10 % validation part for training,
  ``fairface_label_val.csv`` as the test set (the study's numbers are on FairFace's validation set);
  UTKFace: a seeded 70/10/20 train/val/test split, ages binned into FairFace's nine groups.
* Fairness breakdowns: accuracy of each task per race (and per gender), FairFace age accuracy per
  race beside the published values.
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import published
from .datasets import (FAIRFACE_AGES, FAIRFACE_FILES, FAIRFACE_RACES, GENDERS, UTK_RACES, DatasetError,
                       ImageDataset, Normalizer, loader, missing_images, read_fairface_csv, read_utkface_dir,
                       repeat_to, split_items)
from .models import ModelError, MultiHeadResNet, count_params, load_resnet_state
from .outputs import (breakdown_markdown, cached, chart, file_stamp, markdown, save_cache, write_breakdown_csv,
                      write_csv, write_predictions)

STUDY = "fusion2022"
ROWS = ("end2end", "fusion")
DATASETS = ("fairface", "utkface")
TASKS = ("gender", "age", "race")
VERSION = 1
RACES = {"fairface": FAIRFACE_RACES, "utkface": UTK_RACES}
CLASS_NAMES = {"gender": GENDERS, "age": FAIRFACE_AGES}


@dataclass
class Settings:
    rows: list
    datasets: list
    epochs: int
    patience: int
    batch: int
    lr: float
    plateau_factor: float
    plateau_patience: int
    input_size: int
    resize: int
    arch: str
    width: int
    brightness: float
    val_fraction: float
    seed: int
    workers: int
    limit: int | None
    device: str
    init: str | None


def settings(args, rows) -> Settings:
    tr = published.study(STUDY)["training"]
    inp = args.input_size or tr["input"]
    return Settings(rows=rows, datasets=[d for d in DATASETS if getattr(args, d, None)],
                    epochs=args.epochs or tr["max_epochs"], patience=args.patience or tr["patience"],
                    batch=args.batch or tr["batch"], lr=args.lr or tr["lr"], plateau_factor=tr["plateau_factor"],
                    plateau_patience=tr["plateau_patience"], input_size=inp,
                    resize=args.resize or int(round(inp * tr["resize"] / tr["input"])),
                    arch=args.arch or tr["arch"], width=args.resnet_width, brightness=tr["brightness"],
                    val_fraction=tr["val_fraction"], seed=args.seed, workers=args.workers, limit=args.limit,
                    device=args.device, init=args.init)


# ---------------------------------------------------------------------------- listing
def listing() -> str:
    st = published.study(STUDY)
    tr = st["training"]
    lines = [f"## Study fusion2022: {st['title']}", "",
             "Published: accuracy (fraction) on the test split.", "",
             "| dataset | row | model | gender | age | race |", "|---|---|---|---|---|---|"]
    for key, ds in st["datasets"].items():
        for row in ds["rows"]:
            pub = row.get("published") or {}
            lines.append(f"| {ds['name']} | {row['row']} | {row['name']} | "
                         + " | ".join(published.fmt_pub(pub.get(t), st["unit"]) for t in TASKS) + " |")
    for key, ds in st["datasets"].items():
        b = ds.get("breakdown")
        if b:
            lines += ["", f"{ds['name']} {b['what']} (published):", "",
                      "| " + " | ".join(b["published"]) + " |", "|" + "---|" * len(b["published"]),
                      "| " + " | ".join(f"{v:.3f}" for v in b["published"].values()) + " |"]
            lines += [f"* {n}" for n in b.get("notes", ())]
    lines += ["", f"Training (as the study): Adam lr {tr['lr']:g}, batch {tr['batch']}, <= {tr['max_epochs']} epochs, "
                  f"early stopping patience {tr['patience']} on the validation loss (best weights kept), lr x"
                  f"{tr['plateau_factor']} after {tr['plateau_patience']} epochs without improvement; {tr['input']}x"
                  f"{tr['input']} input; augmentation {tr['augmentation']}; ResNet ({tr['arch']} by default, --arch) "
                  "with user-supplied weights (--init state_dict, or scratch).",
              "Fusion: gender classifier, then a male and a female age+race classifier trained on their gender's half "
              "of the training set repeated to the full size; the predicted gender routes each test image."]
    for key, ds in st["datasets"].items():
        lines += [f"* {ds['name']}: {n} (data: {ds['url']})" for n in ds.get("notes", ())]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- inputs
def check_inputs(args, s: Settings) -> list[str]:
    missing = []
    if not s.datasets:
        missing.append("data: neither --fairface DIR nor --utkface DIR was given")
    if args.fairface:
        d = Path(args.fairface)
        if not d.is_dir():
            missing.append(f"FairFace: {d} does not exist")
        else:
            for f in FAIRFACE_FILES.values():
                if not (d / f).is_file():
                    missing.append(f"FairFace: label file {d / f} not found")
    if args.utkface and not Path(args.utkface).is_dir():
        missing.append(f"UTKFace: {args.utkface} does not exist")
    if not args.init:
        missing.append("ResNet weights: --init FILE was not given (an ImageNet ResNet state_dict with torchvision's "
                       "parameter names, or --init scratch to train from random weights)")
    elif args.init != "scratch" and not Path(args.init).is_file():
        missing.append(f"ResNet weights: {args.init} not found")
    return missing


def missing_message(prog, rows, missing) -> str:
    st = published.study(STUDY)["datasets"]
    lines = ["  * FairFace (the 'Padding=0.25' images and the label CSVs) from",
              f"      {st['fairface']['url']}",
              "    unpacked into DIR (DIR/fairface_label_train.csv, DIR/fairface_label_val.csv, DIR/train/, DIR/val/);",
              "    pass --fairface DIR;",
              "  * UTKFace (the 'Aligned&Cropped Faces', <age>_<gender>_<race>_<date>.jpg.chip.jpg) from",
              f"      {st['utkface']['url']}",
              "    unpacked into DIR; pass --utkface DIR;",
              "  * ResNet weights: a state_dict with torchvision's names, e.g. saved on a machine with torchvision by",
              "      torch.save(torchvision.models.resnet34(weights='IMAGENET1K_V1').state_dict(), 'resnet34.pth')",
              "    and pass --init resnet34.pth (--arch resnet18|resnet34|resnet50 to match), or --init scratch."]
    from reproduce.options import missing_inputs_message
    return missing_inputs_message(prog, f"run study fusion2022 ({', '.join(rows)})", missing, lines)


def load_dataset(name: str, args, s: Settings) -> dict:
    if name == "fairface":
        root = Path(args.fairface)
        train_all = read_fairface_csv(root / FAIRFACE_FILES["train"], root)
        test = read_fairface_csv(root / FAIRFACE_FILES["val"], root)
        train, val = split_items(train_all, (1 - s.val_fraction, s.val_fraction), f"{s.seed}/fairface")
        skipped = []
    else:
        items, skipped = read_utkface_dir(args.utkface, skip_malformed=args.skip_malformed)
        train, val, test = split_items(items, (0.7, 0.1, 0.2), f"{s.seed}/utkface")
    parts = {"train": train, "val": val, "test": test}
    if s.limit:
        parts = {k: v[:s.limit] for k, v in parts.items()}
    n, examples = missing_images([it for v in parts.values() for it in v])
    if n:
        raise DatasetError(examples[0], None, f"{n} {name} image(s) named by the labels are missing "
                                              f"(e.g. {', '.join(examples)})")
    empty = [k for k, v in parts.items() if not v]
    if empty:
        raise DatasetError(getattr(args, name), None, f"the {'/'.join(empty)} split is empty; more images are needed")
    return {**parts, "skipped": skipped}


# ---------------------------------------------------------------------------- models
class FusionModel(nn.Module):
    """Gender classifier + one age/race expert per gender: the predicted gender (argmax of the gender
    head) routes each image to its expert.  Output: ``gender`` logits of the classifier and the
    experts' logits of the routed images; ``last_route`` holds the gender each image was sent to."""

    def __init__(self, gender_model: nn.Module, experts: dict):
        super().__init__()
        self.gender_model = gender_model
        self.experts = nn.ModuleDict({str(k): v for k, v in experts.items()})
        self.last_route = None

    def forward(self, x):
        g = self.gender_model(x)["gender"]
        route = (g > 0).long() if g.dim() == 1 else g.argmax(1)
        self.last_route = route
        outs = {"gender": g}
        for label, expert in self.experts.items():
            idx = (route == int(label)).nonzero(as_tuple=True)[0]
            if idx.numel() == 0:
                continue
            for t, v in expert(x[idx]).items():
                if t not in outs:
                    outs[t] = v.new_zeros((x.shape[0],) + tuple(v.shape[1:]))
                outs[t] = outs[t].index_copy(0, idx, v)
        return outs


def new_resnet(heads: dict, s: Settings) -> MultiHeadResNet:
    model = MultiHeadResNet(heads, s.arch, s.width)
    if s.init and s.init != "scratch":
        load_resnet_state(model.backbone, s.init)
    return model


def train_net(name: str, heads: dict, train_items, val_items, s: Settings, args, out: Path, seed: int):
    from .train_loop import fit, set_seed, sum_loss

    set_seed(seed)
    model = new_resnet(heads, s).to(s.device)
    tasks = tuple(heads)
    norm = Normalizer("imagenet")
    train_ds = ImageDataset(train_items, tasks, s.resize, s.input_size, True, norm, flip=True, brightness=s.brightness)
    val_ds = ImageDataset(val_items, tasks, s.resize, s.input_size, False, norm)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=s.plateau_factor,
                                                       patience=s.plateau_patience)
    hist = fit(model, loader(train_ds, s.batch, True, s.workers, seed=seed), loader(val_ds, s.batch, False, s.workers),
               lambda o, lab: sum_loss(o, lab), opt, s.epochs, s.patience, s.device, scheduler=sched,
               progress=not args.no_progress, desc=f"fusion2022 {name}")
    ckpt = out / "checkpoints" / f"{name}.pt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), ckpt)
    return model, hist, ckpt


def accuracy_by(pred, labels, groups, names) -> dict:
    """group name -> (images, accuracy) over the images of each group (groups: int codes into ``names``)."""
    out = {}
    for code, name in enumerate(names):
        m = groups == code
        n = int(m.sum())
        out[name] = (n, float(np.mean(pred[m] == labels[m])) if n else None)
    return out


def evaluate(model, items, s: Settings, dataset: str) -> dict:
    from .train_loop import predict

    ds = ImageDataset(items, TASKS, s.resize, s.input_size, False, Normalizer("imagenet"))
    probs, labels = predict(model, loader(ds, s.batch, False, s.workers), s.device)
    preds = {t: np.argmax(probs[t], 1) for t in TASKS}
    res = {"tasks": {}, "by_race": {}, "by_gender": {}}
    for t in TASKS:
        res["tasks"][t] = {"images": int(len(labels[t])), "acc": float(np.mean(preds[t] == labels[t]))}
        res["by_race"][t] = accuracy_by(preds[t], labels[t], labels["race"], RACES[dataset])
        res["by_gender"][t] = accuracy_by(preds[t], labels[t], labels["gender"], GENDERS)
    return res, probs, labels, [it.key for it in items]


def run_row(row: str, dataset: str, data: dict, s: Settings, args, out: Path) -> dict:
    n_race = len(RACES[dataset])
    base = 1000 * s.seed + 100 * DATASETS.index(dataset)
    if row == "end2end":
        model, hist, ckpt = train_net(f"{dataset}_end2end", {"gender": 2, "age": 9, "race": n_race},
                                      data["train"], data["val"], s, args, out, base + 1)
        hists, ckpts = {"end2end": hist.as_dict()}, [str(ckpt)]
        epochs, best = hist.epochs, hist.best_epoch
        sizes = {"train": len(data["train"]), "val": len(data["val"])}
    else:
        gmodel, ghist, gck = train_net(f"{dataset}_fusion_gender", {"gender": 2}, data["train"], data["val"],
                                       s, args, out, base + 2)
        experts, hists, ckpts, sizes = {}, {"gender": ghist.as_dict()}, [str(gck)], {}
        for code, gname in enumerate(GENDERS):
            part = [it for it in data["train"] if it.labels["gender"] == code]
            val = [it for it in data["val"] if it.labels["gender"] == code] or data["val"]
            train = repeat_to(part, len(data["train"]), f"{s.seed}/{dataset}/{gname}")
            if not train:
                raise DatasetError(getattr(args, dataset), None, f"no {gname} images in the training split")
            experts[code], h, ck = train_net(f"{dataset}_fusion_{gname}", {"age": 9, "race": n_race}, train, val,
                                             s, args, out, base + 3 + code)
            hists[gname], sizes[gname] = h.as_dict(), {"half": len(part), "train": len(train), "val": len(val)}
            ckpts.append(str(ck))
        model = FusionModel(gmodel, experts)
        epochs, best = None, None
    res, probs, labels, keys = evaluate(model, data["test"], s, dataset)
    write_predictions(out / "predictions" / f"{dataset}_{row}.csv", keys, labels, probs)
    res.update({"epochs": epochs, "best_epoch": best, "histories": hists, "checkpoints": ckpts, "sizes": sizes,
                "params": count_params(model)})
    return res


def fingerprint(row, dataset, s: Settings, args) -> dict:
    fp = {"version": VERSION, "row": row, "dataset": dataset,
          **{k: v for k, v in asdict(s).items() if k not in ("rows", "datasets", "workers", "device", "init")}}
    fp["init"] = "scratch" if s.init == "scratch" else file_stamp(s.init)
    fp["data"] = str(Path(getattr(args, dataset)).resolve())
    fp["skip_malformed"] = bool(args.skip_malformed)
    return fp


# ---------------------------------------------------------------------------- main
def run(args, rows, folds=None, prog="run.py") -> int:
    s = settings(args, rows)
    if s.input_size > s.resize:
        print(f"{prog}: error: --input-size {s.input_size} exceeds --resize {s.resize}", file=sys.stderr)
        return 2
    missing = check_inputs(args, s)
    if missing:
        print(missing_message(prog, rows, missing), file=sys.stderr)
        return 2
    out = Path(args.out or "out/fusion2022")
    st = published.study(STUDY)
    results, skipped, reused = {}, {}, 0
    t0 = time.perf_counter()
    try:
        for dataset in s.datasets:
            data = None
            for row in rows:
                fp = fingerprint(row, dataset, s, args)
                cache = out / "cache" / f"{dataset}_{row}.json"
                names = ([f"{dataset}_end2end"] if row == "end2end"
                         else [f"{dataset}_fusion_{n}" for n in ("gender", *GENDERS)])
                res = cached(cache, fp, needs=[out / "checkpoints" / f"{n}.pt" for n in names])
                if res is None:
                    if data is None:
                        data = load_dataset(dataset, args, s)
                        skipped[dataset] = data["skipped"]
                    res = run_row(row, dataset, data, s, args, out)
                    save_cache(cache, fp, res)
                else:
                    reused += 1
                results[(dataset, row)] = res
                accs = ", ".join(f"{t} {v['acc']:.3f}" for t, v in res["tasks"].items())
                print(f"fusion2022 {dataset} {row}: {accs}", file=sys.stderr)
    except (DatasetError, ModelError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - t0

    records, breakdown_rows, md_breakdowns, chart_breakdown = [], [], [], None
    for dataset in s.datasets:
        ds = st["datasets"][dataset]
        pub_b = (ds.get("breakdown") or {}).get("published") or {}
        for row in ds["rows"]:
            if row["row"] not in rows:
                continue
            res = results[(dataset, row["row"])]
            for t in TASKS:
                r = res["tasks"][t]
                fold = {"fold": "test", "images": r["images"], "acc": r["acc"], "epochs": res["epochs"],
                        "best_epoch": res["best_epoch"]}
                by_race = [{"group": g, "images": n, "acc": a,
                            "published": pub_b.get(g) if (t == "age" and dataset == "fairface") else None}
                           for g, (n, a) in res["by_race"][t].items()]
                by_gender = [{"group": g, "images": n, "acc": a} for g, (n, a) in res["by_gender"][t].items()]
                mean = {"acc": r["acc"]}
                if res["epochs"] is not None:
                    mean["epochs"] = res["epochs"]
                extra = {"by_race": by_race, "by_gender": by_gender, "params": res["params"], "arch": s.arch,
                         "input_size": s.input_size, "sizes": res["sizes"]}
                if res["epochs"] is None:
                    extra["epochs_by_model"] = {k: h["epochs"] for k, h in res["histories"].items()}
                records.append(published.record(STUDY, dataset, row, t, st["unit"], [fold], mean, {},
                                                epochs=None, **extra))
                for by, rows_b in (("race", by_race), ("gender", by_gender)):
                    for b in rows_b:
                        breakdown_rows.append({"dataset": dataset, "row": row["row"], "target": t, "by": by,
                                               "group": b["group"], "images": b["images"], "acc": b["acc"],
                                               "published_acc": b.get("published")})
        for t in TASKS:
            cols = {f"{r} (ours)": results[(dataset, r)]["by_race"][t] for r in rows}
            title = f"{ds['name']}: {t} accuracy per race"
            md_breakdowns.append(breakdown_markdown(title, list(RACES[dataset]), cols,
                                                    pub_b if (t == "age" and dataset == "fairface") else None))
        if chart_breakdown is None:
            series = {}
            if dataset == "fairface" and pub_b:
                series["published"] = pub_b
            for r in rows:
                series[r] = {g: a for g, (n, a) in results[(dataset, r)]["by_race"]["age"].items()}
            chart_breakdown = {"groups": list(RACES[dataset]), "series": series,
                               "title": f"{ds['name']}: age accuracy per race"}

    print("## Study fusion2022\n")
    print(markdown(records))
    for b in md_breakdowns:
        print("\n" + b)
    notes = []
    if "fairface" in s.datasets:
        notes += (st["datasets"]["fairface"].get("breakdown") or {}).get("notes", [])
    if "utkface" in s.datasets:
        notes += st["datasets"]["utkface"].get("notes", [])
    for dataset, names in skipped.items():
        if names:
            notes.append(f"{dataset}: {len(names)} file(s) with malformed names left out (--skip-malformed): "
                         f"{', '.join(names[:5])}")
    if s.limit:
        notes.append(f"--limit {s.limit}: at most {s.limit} images per split (smoke run, not the study)")
    if s.epochs != st["training"]["max_epochs"]:
        notes.append(f"--epochs {s.epochs}: the study trains up to {st['training']['max_epochs']} epochs")
    if s.init == "scratch":
        notes.append("--init scratch: random ResNet weights (the study starts from ImageNet weights)")
    if folds and folds != list(range(5)) and args.folds != "0,1,2,3,4":
        notes.append("--folds is ignored by fusion2022 (one train/val/test split per dataset)")
    if notes:
        print("\nNotes:\n" + "\n".join(f"* {n}" for n in notes))

    from reproduce.report import write_json
    out.mkdir(parents=True, exist_ok=True)
    summary = {"wall_seconds": round(wall, 3), "device": s.device, "cached_results": reused,
               "histories": {f"{d}_{r}": results[(d, r)]["histories"] for d in s.datasets for r in rows},
               "skipped_files": skipped}
    write_json(out / "results.json", {"generated_by": f"reproduce/run.py --study {STUDY}", "study": STUDY,
                                      "title": st["title"], "protocol": __doc__.strip().split("\n\n")[2],
                                      "settings": {**asdict(s), "study": STUDY, "fairface": args.fairface,
                                                   "utkface": args.utkface},
                                      "summary": summary, "notes": notes, "cells": records})
    write_csv(out / "results.csv", records)
    write_breakdown_csv(out / "breakdown.csv", breakdown_rows)
    png = chart(out / "results.png", records, "fusion2022: published vs reproduced accuracy", chart_breakdown)
    print(f"\nWrote {out / 'results.json'}, {out / 'results.csv'}, {out / 'breakdown.csv'}"
          + (f", {png}" if png else "") + f"; checkpoints in {out / 'checkpoints'}")
    return 0
