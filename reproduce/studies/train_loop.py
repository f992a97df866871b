"""Training for the follow-up studies: losses, early stopping with the best checkpoint, the epoch loop.

* :func:`multitask_loss`: ``gamma * L_gender + (1 - gamma) * L_age`` (mtl2022); gender is one logit
  with binary cross-entropy, age an 8-way softmax with cross-entropy; a label of ``-1`` means "not
  annotated" and is left out of its term (an image of the gender list without a usable age and vice
  versa); a term with no annotated image in the batch is 0.
* :class:`EarlyStopping`: Keras' ``EarlyStopping(monitor="val_loss", patience=P, restore_best_weights)``
  with ``ModelCheckpoint(save_best_only=True)``: an epoch improves when its value is below the best
  so far by more than ``min_delta``; training stops after ``patience`` epochs without improvement;
  the weights of the best epoch are kept and restored.
* :func:`fit`: the epoch loop (train, validation loss, optional ReduceLROnPlateau, early stopping,
  progress bar), returning a :class:`History`.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F


# ---------------------------------------------------------------------------- losses
def _masked(labels: torch.Tensor):
    return labels >= 0


def binary_loss(logit: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE with a sigmoid on one logit per image; labels 0/1, -1 ignored; 0 when none is annotated."""
    m = _masked(labels)
    if not bool(m.any()):
        return logit.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logit[m], labels[m].to(logit.dtype))


def softmax_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over softmax classes; -1 ignored; 0 when none is annotated."""
    m = _masked(labels)
    if not bool(m.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[m], labels[m])


def task_loss(task: str, out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One-logit outputs (``gender`` of the mtl2022 nets) use BCE, class logits use CE."""
    return binary_loss(out, labels) if out.dim() == 1 else softmax_loss(out, labels)


def multitask_loss(outputs: dict, labels: dict, gamma: float) -> torch.Tensor:
    """``gamma * L_gender + (1 - gamma) * L_age`` (the mtl2022 multi-task loss)."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    return (gamma * task_loss("gender", outputs["gender"], labels["gender"])
            + (1.0 - gamma) * task_loss("age", outputs["age"], labels["age"]))


def sum_loss(outputs: dict, labels: dict, weights: dict | None = None) -> torch.Tensor:
    """Sum of the per-task losses of the tasks the model outputs (weights default to 1)."""
    total = None
    for t, out in outputs.items():
        term = task_loss(t, out, labels[t]) * (1.0 if weights is None else weights.get(t, 1.0))
        total = term if total is None else total + term
    return total


def predictions(task_out: torch.Tensor) -> torch.Tensor:
    """Class predictions: logit > 0 for one-logit outputs, argmax otherwise."""
    return (task_out > 0).long() if task_out.dim() == 1 else task_out.argmax(1)


def probabilities(task_out: torch.Tensor) -> torch.Tensor:
    """(N, C) class probabilities (a one-logit output becomes [1 - p, p])."""
    if task_out.dim() == 1:
        p = torch.sigmoid(task_out)
        return torch.stack([1 - p, p], 1)
    return torch.softmax(task_out, 1)


# ---------------------------------------------------------------------------- early stopping
@dataclass
class EarlyStopping:
    """Keras-style early stopping on a value to minimise, keeping the best state.

    ``step(value, state)`` records one epoch (epochs count from 1) and returns True when it improved;
    ``stop`` tells whether ``patience`` epochs in a row did not improve; ``best_state`` holds a deep
    copy of the ``state`` given with the best value (a model's ``state_dict()``).
    """
    patience: int
    min_delta: float = 0.0
    best: float = math.inf
    best_epoch: int = 0
    epoch: int = 0
    wait: int = 0
    best_state: dict | None = field(default=None, repr=False)

    def step(self, value: float, state: dict | None = None) -> bool:
        self.epoch += 1
        value = float(value)
        if not math.isnan(value) and value < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = value, self.epoch, 0
            if state is not None:
                self.best_state = {k: v.detach().clone() if torch.is_tensor(v) else copy.deepcopy(v)
                                   for k, v in state.items()}
            return True
        self.wait += 1
        return False

    @property
    def stop(self) -> bool:
        return self.wait >= self.patience


def run_early_stopping(values, patience: int, min_delta: float = 0.0) -> tuple[int, int]:
    """(epochs run, best epoch) for a sequence of validation values, as :func:`fit` would stop."""
    es = EarlyStopping(patience, min_delta)
    for v in values:
        es.step(v)
        if es.stop:
            break
    return es.epoch, es.best_epoch


# ---------------------------------------------------------------------------- loop
@dataclass
class History:
    epochs: int = 0                       # epochs trained (incl. the patience epochs after the best)
    best_epoch: int = 0                   # epoch of the kept weights
    best_val_loss: float = math.nan
    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False

    def as_dict(self) -> dict:
        return {"epochs": self.epochs, "best_epoch": self.best_epoch, "best_val_loss": self.best_val_loss,
                "stopped_early": self.stopped_early, "seconds": round(self.seconds, 3),
                "train_loss": [round(v, 6) for v in self.train_loss], "val_loss": [round(v, 6) for v in self.val_loss],
                "lr": self.lr}


def _to(batch, device):
    x, labels = batch
    return x.to(device, non_blocking=True), {k: v.to(device, non_blocking=True) for k, v in labels.items()}


def progress_bar(total, desc, enabled: bool):
    from reproduce.options import progress_bar as bar
    return bar(total, desc, off=not enabled, unit="batch")


def validation_loss(model, loader, loss_fn, device) -> float:
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for batch in loader:
            x, labels = _to(batch, device)
            loss = loss_fn(model(x), labels)
            total += float(loss) * x.shape[0]
            n += x.shape[0]
    return total / n if n else math.nan


def fit(model, train_loader, val_loader, loss_fn: Callable, optimizer, max_epochs: int, patience: int,
        device="cpu", scheduler=None, progress: bool = True, desc: str = "train",
        on_epoch: Callable | None = None) -> History:
    """Train until ``max_epochs`` or early stopping on the validation loss; the best epoch's weights
    are loaded back into ``model`` at the end.  ``scheduler``: a ReduceLROnPlateau (stepped on the
    validation loss) or None."""
    hist = History()
    es = EarlyStopping(patience)
    t0 = time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        model.train()
        bar = progress_bar(len(train_loader), f"{desc} epoch {epoch}/{max_epochs}", progress)
        total, n = 0.0, 0
        for batch in train_loader:
            x, labels = _to(batch, device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), labels)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * x.shape[0]
            n += x.shape[0]
            bar.update(1)
            bar.set_postfix_str(f"loss {total / max(n, 1):.4f}")
        bar.close()
        val = validation_loss(model, val_loader, loss_fn, device)
        hist.train_loss.append(total / n if n else math.nan)
        hist.val_loss.append(val)
        hist.lr.append(optimizer.param_groups[0]["lr"])
        es.step(val, model.state_dict())
        if scheduler is not None:
            scheduler.step(val)
        if on_epoch is not None:
            on_epoch(epoch, hist)
        if es.stop:
            hist.stopped_early = True
            break
    hist.epochs = es.epoch
    hist.best_epoch = es.best_epoch
    hist.best_val_loss = es.best
    if es.best_state is not None:
        model.load_state_dict(es.best_state)
    hist.seconds = time.perf_counter() - t0
    return hist


@torch.no_grad()
def predict(model, loader, device="cpu", crops: int = 1) -> tuple[dict, dict]:
    """``(probabilities, labels)``: task -> (N, C) numpy probabilities and task -> (N,) labels.

    ``crops = 10``: the loader yields (B, 10, C, S, S) oversampled crops whose probabilities are averaged.
    """
    model.eval()
    probs: dict = {}
    labels: dict = {}
    for batch in loader:
        x, lab = _to(batch, device)
        if x.dim() == 5:
            b, k = x.shape[:2]
            out = model(x.reshape(b * k, *x.shape[2:]))
            p = {t: probabilities(o).reshape(b, k, -1).mean(1) for t, o in out.items()}
        else:
            p = {t: probabilities(o) for t, o in model(x).items()}
        for t, v in p.items():
            probs.setdefault(t, []).append(v.float().cpu().numpy())
        for t, v in lab.items():
            labels.setdefault(t, []).append(v.cpu().numpy())
    return ({t: np.concatenate(v) for t, v in probs.items()}, {t: np.concatenate(v) for t, v in labels.items()})


def set_seed(seed: int) -> None:
    import random
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
