"""Study ``mtl2022``: single-task, multi-task and transfer-learning age/gender nets on Adience.

    run.py --study mtl2022 --list
    run.py --study mtl2022 --adience DIR [--row gender,age,multitask,transfer] [--folds 0,1,2,3,4]
           [--backbone deploy.prototxt --init weights.caffemodel] [--gamma 0.5] [--epochs N] --out DIR

Protocol (as the study): 5-fold subject-exclusive cross-validation on the in-plane aligned [i] faces
with the 2017 paper's fold lists (train / val / test of ``train_val_txt_files_per_fold``); images
squashed to 256x256, random 227x227 crops as the only augmentation, the centre crop at test time
(``--test-crops 10``: the 2017 10-crop average); Adam (lr 1e-4, betas 0.9/0.999, eps 1e-7), batch 128,
up to 100 epochs, early stopping with patience 10 on the validation loss, best checkpoint kept.
Rows: ``gender`` / ``age`` (Table 1 net, one task), ``multitask`` (shared trunk, one FC branch per
task, loss gamma * L_gender + (1 - gamma) * L_age), ``transfer`` (a user-supplied Caffe backbone
truncated at ``--backbone-blob``, last ``--trainable-layers`` layers trainable, the two branches on
globally average-pooled features, ``--transfer-input-size`` input).  The multi-task nets train on
the union of the age and gender lists (a face in one list only has no label for the other task);
gender accuracy is scored on the gender test list and age accuracy on the age test list, mean +-
population std over the folds, as the 2017 tables.
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import published
from reproduce import options as shared
from .datasets import DatasetError, ImageDataset, Normalizer, adience_items, adience_list_file, \
    adience_lmdb_path, lmdb_items, loader, missing_images
from .models import ModelError, count_params, mtl_model, mtl_param_count, trunk_size
from .outputs import (cached, chart, file_stamp, markdown, save_cache, write_csv, write_predictions)

STUDY = "mtl2022"
ROWS = ("gender", "age", "multitask", "transfer")
TASKS = {"gender": ("gender",), "age": ("age",), "multitask": ("gender", "age"), "transfer": ("gender", "age")}
PARTS = ("train", "val", "test")
VERSION = 1                     # bump when training or scoring changes, so cached fold results are redone


@dataclass
class Settings:
    rows: list
    folds: list
    epochs: int
    patience: int
    batch: int
    lr: float
    betas: tuple
    eps: float
    gamma: float
    input_size: int
    resize: int
    transfer_input: int
    transfer_resize: int
    trainable_layers: int
    test_crops: int
    seed: int
    workers: int
    limit: int | None
    device: str


def _resize_for(crop: int, given: int | None) -> int:
    return given if given else int(round(crop * 256 / 227))


def settings(args, rows, folds) -> Settings:
    tr = published.study(STUDY)["training"]
    inp = args.input_size or tr["crop"]
    tinp = args.transfer_input_size or tr["transfer_input"]
    return Settings(rows=rows, folds=folds, epochs=args.epochs or tr["max_epochs"],
                    patience=args.patience or tr["patience"], batch=args.batch or tr["batch"],
                    lr=args.lr or tr["lr"], betas=tuple(tr["betas"]), eps=tr["eps"],
                    gamma=tr["gamma"] if args.gamma is None else args.gamma, input_size=inp,
                    resize=_resize_for(inp, args.resize), transfer_input=tinp,
                    transfer_resize=_resize_for(tinp, args.resize),
                    trainable_layers=tr["trainable_layers"] if args.trainable_layers is None else args.trainable_layers,
                    test_crops=args.test_crops, seed=args.seed, workers=args.workers, limit=args.limit,
                    device=args.device)


# ---------------------------------------------------------------------------- listing
def listing() -> str:
    st = published.study(STUDY)
    unit = st["unit"]
    tr = st["training"]
    lines = [f"## Study mtl2022: {st['title']}", "", f"Data: {st['dataset']}.",
             "Published: accuracy in %, mean +- std over the 5 folds; epochs = mean epochs trained per fold.", "",
             "| row | model | input | parameters (ours) | parameters (published) | gender | age | epochs |",
             "|---|---|---|---|---|---|---|---|"]
    for row in st["rows"]:
        pub = row.get("published") or {}
        kind = row.get("model")
        if row.get("reference"):
            model, inp, ours, theirs = "reference (2017 AdienceNet, `--table 2/3 --col A`)", 227, "-", "-"
        elif kind == "transfer":
            model = (f"your backbone (--backbone/--init) cut at --backbone-blob, last {tr['trainable_layers']} "
                     f"layers trainable, + 2 branches")
            inp, ours, theirs = tr["transfer_input"], "backbone + 2 x FC branch", "-"
        else:
            model = {"gender": "Table 1 net, 1 sigmoid output (BCE)", "age": "Table 1 net, 8-way softmax (CE)",
                     "multitask": "shared Table 1 trunk + gender and age FC branches"}[kind]
            inp, ours, theirs = tr["crop"], f"{mtl_param_count(kind):,}", f"{row['published_params']:,}"
        ep = row.get("published_epochs")
        lines.append(f"| {row['row']} | {row['name']}: {model} | {inp} | {ours} | {theirs} | "
                     f"{published.fmt_pub(pub.get('gender'), unit)} | {published.fmt_pub(pub.get('age'), unit)} | "
                     f"{'-' if ep is None else ep} |")
    lines += ["", f"Training (as the study): Adam lr {tr['lr']:g} (betas {tr['betas'][0]}/{tr['betas'][1]}, eps "
                  f"{tr['eps']:g}), batch {tr['batch']}, <= {tr['max_epochs']} epochs, early stopping patience "
                  f"{tr['patience']} on the validation loss, best checkpoint kept; images "
                  f"{tr['resize']}x{tr['resize']}, "
                  f"random {tr['crop']}x{tr['crop']} crops (the only augmentation); multi-task loss "
                  f"gamma * L_gender + (1 - gamma) * L_age, gamma {tr['gamma']} (--gamma).",
              "Table 1 net: conv 24 7x7 -> 221, ReLU, max pool 3x3/2 -> 110, LRN; conv 64 5x5 -> 106, ReLU, "
              "pool -> 52, "
              "LRN; conv 96 3x3 -> 50, ReLU, pool -> 24, LRN; FC 128, ReLU, dropout 0.5, FC 128, ReLU, dropout 0.5, "
              "output (pooling rounds down)."]
    for row in st["rows"]:
        lines += [f"* {row['row']}: {n}" for n in row.get("notes", ())]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- inputs
def _store(args):
    from reproduce.assets import AssetStore
    return AssetStore(args.assets_dir, args.assets_mirror,
                      progress=False if args.no_progress else None)


def check_inputs(args, s: Settings) -> tuple[list[str], object]:
    """(missing-input lines, asset store or None)."""
    from reproduce.assets import AssetError

    missing, store = [], None
    if args.adience and args.lmdb:
        missing.append("give either --adience DIR or --lmdb DIR, not both")
    elif not args.adience and not args.lmdb:
        missing.append("Adience data: neither --adience DIR (with aligned/) nor --lmdb DIR was given")
    elif args.lmdb:
        absent = [adience_lmdb_path(args.lmdb, k, t, p) for k in s.folds for t in ("gender", "age") for p in PARTS]
        absent = [p for p in absent if not (p / "data.mdb").is_file()]
        if absent:
            missing.append(shared.listing("LMDB", absent))
    else:
        if not (Path(args.adience) / "aligned").is_dir():
            missing.append(f"Adience images: {Path(args.adience) / 'aligned'} does not exist (the in-plane aligned "
                           f"faces, folder 'aligned' of the Adience download)")
        if args.fold_lists:
            absent = [adience_list_file(args.fold_lists, k, t, p) for k in s.folds for t in ("gender", "age")
                      for p in PARTS]
            absent = [p for p in absent if not p.is_file()]
            if absent:
                missing.append(shared.listing("fold list", absent))
        else:
            store = _store(args)
            try:
                for k in s.folds:
                    for t in ("gender", "age"):
                        for p in PARTS:
                            store.fold_list("i", k, t, p)
            except AssetError as exc:
                missing.append(f"the 2017 fold lists could not be fetched ({exc}); pass --fold-lists DIR "
                               f"(upstream folds/ or `python -m reproduce.folds` output) or --assets-mirror")
    if "transfer" in s.rows:
        if not args.init:
            missing.append("transfer backbone weights: --init FILE was not given (a Caffe caffemodel with "
                           "--backbone deploy.prototxt, or a converted model.pt); or leave the row out with "
                           "--row gender,age,multitask")
        elif not Path(args.init).is_file():
            missing.append(f"transfer backbone weights: {args.init} not found")
        elif not str(args.init).endswith(".pt") and not args.backbone:
            missing.append("transfer backbone definition: --backbone PROTOTXT (the deploy prototxt of "
                           f"{args.init}) was not given")
        elif args.backbone and not Path(args.backbone).is_file():
            missing.append(f"transfer backbone definition: {args.backbone} not found")
    return missing, store


def missing_message(prog: str, rows, missing: list[str]) -> str:
    from reproduce.sources import LINKS
    lines = ["  * the raw Adience faces (folder aligned/) from",
              f"      {LINKS['adience']}",
              "    and pass --adience DIR (DIR/aligned/<user>/landmark_aligned_face.<id>.<image>); the 2017 fold",
              "    lists are fetched from the upstream repository (or --fold-lists DIR, --assets-mirror);",
              "  * or the 2017 LMDBs (lmdb/Test_fold_is_K/{age,gender}_{train,val,test}_lmdb) from",
              f"      {LINKS['lmdb']}",
              "    and pass --lmdb DIR;",
              "  * transfer row: ImageNet weights of a backbone as a Caffe model (e.g. a Caffe-zoo GoogLeNet or",
              "    ResNet deploy.prototxt + .caffemodel: --backbone PROTOTXT --init CAFFEMODEL) or a converted",
              "    model.pt (`python -m converters convert`); the study's Keras Xception weights are not a Caffe",
              "    model."]
    return shared.missing_inputs_message(prog, f"run study mtl2022 ({', '.join(rows)})", missing, lines)


# ---------------------------------------------------------------------------- one fold
class FoldData:
    """The train/val/test items of one fold (both tasks), loaded once and shared by the rows."""

    def __init__(self, args, fold: int, store, limit):
        self.items = {}
        for part in PARTS:
            if args.lmdb:
                items = lmdb_items(args.lmdb, fold, part)
            else:
                items = adience_items(args.adience, args.fold_lists, fold, part, store=store)
            if limit:
                items = items[:limit]
            self.items[part] = items
        if not args.lmdb:
            n, examples = missing_images([it for v in self.items.values() for it in v])
            if n:
                raise DatasetError(examples[0], None, f"{n} Adience image(s) of the fold {fold} lists are missing "
                                                      f"(e.g. {', '.join(examples)})")

    def of(self, part: str, tasks) -> list:
        if len(tasks) == 2:
            return self.items[part]
        (t,) = tasks
        return [it for it in self.items[part] if it.labels[t] >= 0]


def build_model(row: str, s: Settings, args):
    from .models import TransferNet, load_backbone
    if row != "transfer":
        return mtl_model(row, s.input_size), Normalizer("scale"), s.input_size, s.resize, {}
    init = Path(args.init)
    backbone, blob, channels = load_backbone(args.backbone if not str(init).endswith(".pt") else None, init,
                                             args.backbone_blob, s.transfer_input)
    model = TransferNet(backbone, channels, TASKS[row], s.trainable_layers)
    mean = [float(v) for v in str(args.backbone_mean).split(",")]
    info = {"backbone_blob": blob, "backbone_channels": channels,
            "trainable_backbone_layers": model.trainable_layer_names,
            "trainable_params": count_params(model, trainable_only=True)}
    return model, Normalizer("caffe", mean, args.backbone_scale), s.transfer_input, s.transfer_resize, info


def loss_for(row: str, gamma: float):
    from .train_loop import multitask_loss, task_loss
    if row in ("gender", "age"):
        return lambda out, lab: task_loss(row, out[row], lab[row])
    return lambda out, lab: multitask_loss(out, lab, gamma)


def run_fold(row: str, fold: int, data: FoldData, s: Settings, args, out: Path) -> dict:
    import numpy as np
    import torch

    from reproduce.protocol import accuracy, confusion_matrix
    from .train_loop import fit, predict, set_seed

    tasks = TASKS[row]
    set_seed(1000 * s.seed + 10 * fold + ROWS.index(row))
    model, norm, crop, resize, info = build_model(row, s, args)
    model.to(s.device)
    mk = lambda part, train: ImageDataset(data.of(part, tasks), tasks, resize, crop, train, norm,  # noqa: E731
                                          ten_crop=(part == "test" and s.test_crops == 10))
    train_dl = loader(mk("train", True), s.batch, True, s.workers, seed=1000 * s.seed + fold)
    val_dl = loader(mk("val", False), s.batch, False, s.workers)
    test_ds = mk("test", False)
    test_dl = loader(test_ds, max(1, s.batch // (10 if s.test_crops == 10 else 1)), False, s.workers)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=s.lr, betas=s.betas, eps=s.eps)
    hist = fit(model, train_dl, val_dl, loss_for(row, s.gamma), opt, s.epochs, s.patience, s.device,
               progress=not args.no_progress, desc=f"mtl2022 {row} fold {fold}")
    probs, labels = predict(model, test_dl, s.device, crops=s.test_crops)
    ckpt = out / "checkpoints" / f"{row}_fold{fold}.pt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), ckpt)
    write_predictions(out / "predictions" / f"{row}_fold{fold}.csv", [it.key for it in test_ds.items], labels, probs)
    per_task = {}
    for t in tasks:
        m = labels[t] >= 0
        pred = np.argmax(probs[t][m], 1)
        per_task[t] = {"fold": fold, "images": int(m.sum()), "acc": accuracy(pred, labels[t][m]),
                       "epochs": hist.epochs, "best_epoch": hist.best_epoch, "best_val_loss": hist.best_val_loss,
                       "seconds": round(hist.seconds, 3),
                       "confmat": confusion_matrix(pred, labels[t][m], probs[t].shape[1]).tolist()}
    return {"tasks": per_task, "history": hist.as_dict(), "checkpoint": str(ckpt),
            "params": count_params(model), "train_images": len(train_dl.dataset), "val_images": len(val_dl.dataset),
            "input_size": crop, "resize": resize, **info}


def fingerprint(row, fold, s: Settings, args) -> dict:
    fp = {"version": VERSION, "row": row, "fold": fold, **{k: v for k, v in asdict(s).items()
                                                           if k not in ("rows", "folds", "workers", "device")}}
    fp["data"] = {"adience": str(Path(args.adience).resolve()) if args.adience else None,
                  "lmdb": str(Path(args.lmdb).resolve()) if args.lmdb else None,
                  "fold_lists": str(Path(args.fold_lists).resolve()) if args.fold_lists else "upstream"}
    if row == "transfer":
        fp["backbone"] = {"init": file_stamp(args.init), "prototxt": file_stamp(args.backbone),
                          "blob": args.backbone_blob, "mean": args.backbone_mean, "scale": args.backbone_scale}
    elif row != "multitask":
        fp.pop("gamma")
    return fp


# ---------------------------------------------------------------------------- main
def run(args, rows, folds, prog="run.py") -> int:
    from reproduce.protocol import aggregate
    from reproduce.report import write_json

    s = settings(args, rows, folds)
    for row in rows:
        inp, res = (s.transfer_input, s.transfer_resize) if row == "transfer" else (s.input_size, s.resize)
        if inp > res:
            print(f"{prog}: error: {row}: the input size {inp} exceeds the image size {res} (--resize)",
                  file=sys.stderr)
            return 2
        if row != "transfer":
            try:
                trunk_size(inp)
            except ModelError as exc:
                print(f"{prog}: error: --input-size: {exc}", file=sys.stderr)
                return 2
    missing, store = check_inputs(args, s)
    if missing:
        print(missing_message(prog, rows, missing), file=sys.stderr)
        return 2
    out = Path(args.out or "out/mtl2022")
    st = published.study(STUDY)
    results = {row: {} for row in rows}
    reused = 0
    t0 = time.perf_counter()
    try:
        for fold in folds:
            data = None
            for row in rows:
                fp = fingerprint(row, fold, s, args)
                cache = out / "cache" / f"{row}_fold{fold}.json"
                res = cached(cache, fp, needs=[out / "checkpoints" / f"{row}_fold{fold}.pt"])
                if res is None:
                    if data is None:
                        data = FoldData(args, fold, store, s.limit)
                    res = run_fold(row, fold, data, s, args, out)
                    save_cache(cache, fp, res)
                else:
                    reused += 1
                results[row][fold] = res
                accs = ", ".join(f"{t} {100 * v['acc']:.1f} %" for t, v in res["tasks"].items())
                print(f"mtl2022 {row} fold {fold}: {res['history']['epochs']} epochs (best "
                      f"{res['history']['best_epoch']}), {accs}", file=sys.stderr)
    except (DatasetError, ModelError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - converter errors name the file/layer
        from converters.formats import CaffeFormatError
        try:
            from converters.layers import ConversionError
        except ImportError:  # pragma: no cover
            ConversionError = CaffeFormatError
        if isinstance(exc, (CaffeFormatError, ConversionError)):
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
        raise
    wall = time.perf_counter() - t0

    records = []
    for row in st["rows"]:
        if row.get("reference"):
            for t in st["targets"]:
                records.append(published.record(STUDY, "adience", row, t, st["unit"]))
            continue
        if row["row"] not in rows:
            continue
        for t in TASKS[row["row"]]:
            folds_t = [results[row["row"]][k]["tasks"][t] for k in folds]
            mean, std = {}, {}
            for m in ("acc", "epochs", "best_epoch"):
                mean[m], std[m] = aggregate(f[m] for f in folds_t)
            first = results[row["row"]][folds[0]]
            extra = {"params": first["params"], "input_size": first["input_size"], "resize": first["resize"]}
            if row.get("published_params"):
                extra["published_params"] = row["published_params"]
            for k in ("backbone_blob", "trainable_backbone_layers", "trainable_params"):
                if k in first:
                    extra[k] = first[k]
            if row["row"] in ("multitask", "transfer"):
                extra["gamma"] = s.gamma
            records.append(published.record(STUDY, "adience", row, t, st["unit"], folds_t, mean, std, **extra))

    md = markdown(records)
    print(f"## Study mtl2022 (Adience, folds {','.join(map(str, folds))})\n")
    print(md)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"wall_seconds": round(wall, 3), "device": s.device, "cached_fold_results": reused,
               "histories": {row: {str(k): results[row][k]["history"] for k in folds} for row in rows}}
    sett = {**asdict(s), "study": STUDY, "adience": args.adience, "lmdb": args.lmdb, "fold_lists": args.fold_lists,
            "backbone": args.backbone, "init": args.init, "backbone_blob": args.backbone_blob,
            "backbone_mean": args.backbone_mean, "backbone_scale": args.backbone_scale}
    write_json(out / "results.json", {"generated_by": f"reproduce/run.py --study {STUDY}", "study": STUDY,
                                      "title": st["title"], "protocol": __doc__.strip().split("\n\n")[2],
                                      "settings": sett, "summary": summary, "cells": records})
    write_csv(out / "results.csv", records)
    png = chart(out / "results.png", records, "mtl2022 on Adience: published vs reproduced (mean +- std over folds)")
    notes = []
    if folds != list(range(5)):
        notes.append(f"only folds {','.join(map(str, folds))}: means are over these folds, the study uses all 5")
    if s.limit:
        notes.append(f"--limit {s.limit}: at most {s.limit} images per split (smoke run, not the study)")
    if s.epochs != st["training"]["max_epochs"]:
        notes.append(f"--epochs {s.epochs}: the study trains up to {st['training']['max_epochs']} epochs")
    if notes:
        print("\nNotes:\n" + "\n".join(f"* {n}" for n in notes))
    print(f"\nWrote {out / 'results.json'}, {out / 'results.csv'}" + (f", {png}" if png else "")
          + f"; checkpoints in {out / 'checkpoints'}")
    return 0
