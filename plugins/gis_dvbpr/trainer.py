"""BPR training of DVBPR end to end (Kang et al. 2017), resumable, CPU or GPU.

Each epoch draws |train interactions| triplets (u uniform over users with training items, i
uniform among u's items, j uniform among the items u never trained on) and takes Adam steps on

    L = -sum_b log sigmoid(theta_u . (phi(X_i) - phi(X_j)))
        + lambda_cnn / 2 * sum ||W||^2 (CNN weights, not biases)
        + lambda_theta / 2 * sum_b ||theta_u||^2           (users of the batch)

over batches of 128. No data augmentation. After every epoch the validation AUC (100 sampled
negatives per user) is measured and the best weights are kept as the final checkpoint, with the
test AUC (100 negatives and all items) and a popularity baseline in its model card.

Files in ``out`` (a folder):
    <dataset>.safetensors   the best model so far (loads with the plugin factory)
    <dataset>.json          its model card
    train-state.safetensors resumable state: current weights, Adam moments, RNG, loop position
"""

from __future__ import annotations

import datetime
import hashlib
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from gis import training as _training
from gis.errors import CheckpointError, GisUsageError, NonFiniteLossError
from gis.training import (
    Budget,
    TrainState,
    command_line,
    flatten,
    load_checkpoint,
    load_optimizer_state,
    load_rng_state,
    machine_info,
    optimizer_state_tensors,
    rng_state_tensors,
    save_checkpoint,
    seed_everything,
    set_threads,
    unflatten,
    write_json,
)

from .checkpoint import save_dvbpr
from .metrics import AUCEvaluator, popularity_auc, user_positives
from .model import DVBPR, LAYOUTS, Layout, get_layout

STATE_FILE = "train-state.safetensors"
#: Adam learning rate per layout. The paper's 1e-4 for the port layouts; the small "32" network
#: needs 1e-3 to pass test AUC 0.85 within a few CPU epochs (fashion-colors, seed 0: val AUC
#: 0.84 / 0.87 / 0.89 after epochs 1-3, 0.909 at epoch 13; about 80 s per epoch on one core)
DEFAULT_LR = {"32": 1e-3, "128": 1e-4, "224": 1e-4}


def _default_layout(resolution: int) -> str:
    return {32: "32", 128: "128", 224: "224"}.get(int(resolution), "128")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "dataset"


def sample_triplets(user_items: list[np.ndarray], num_items: int, count: int,
                    generator: torch.Generator) -> torch.Tensor:
    """(count, 3) long (u, i, j): u uniform over users with items, i from u's items, j uniform
    among the items u does not have. Drawn on the CPU from ``generator`` (device-independent)."""
    counts = torch.as_tensor([len(x) for x in user_items], dtype=torch.long)
    starts = torch.cumsum(counts, 0) - counts
    flat = torch.as_tensor(np.concatenate(user_items) if len(user_items) else np.zeros(0),
                           dtype=torch.long)
    active = torch.nonzero(counts > 0)[:, 0]
    if len(active) == 0:
        raise GisUsageError("the dataset has no training interactions")
    u = active[torch.randint(len(active), (count,), generator=generator)]
    off = (torch.rand(count, generator=generator, dtype=torch.float64) * counts[u]).long()
    i = flat[starts[u] + off.clamp_max(counts[u] - 1)]
    keys = torch.sort(torch.repeat_interleave(torch.arange(len(counts)), counts) * num_items
                      + flat).values
    j = torch.randint(num_items, (count,), generator=generator)
    for _ in range(1000):
        bad = torch.isin(u * num_items + j, keys)
        nbad = int(bad.sum())
        if nbad == 0:
            return torch.stack([u, i, j], 1)
        j[bad] = torch.randint(num_items, (nbad,), generator=generator)
    raise GisUsageError("could not sample negatives: a user interacted with almost every item")


def dataset_fingerprint(dataset) -> str:
    """sha256 (16 hex digits) of the images and the train/val/test interactions: tells whether a
    checkpoint was trained on exactly this data (item indices and user rows must match)."""
    h = hashlib.sha256()
    for arr in (dataset.images, dataset.train, dataset.val, dataset.test):
        a = np.ascontiguousarray(arr)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch) + 1)


class ItemImages:
    """Item images on the device as uint8 (N, 3, H, W); batches indexed there."""

    def __init__(self, images: np.ndarray, image_size: int, device: torch.device):
        arr = torch.from_numpy(np.ascontiguousarray(images))       # (N, H, W, 3) uint8
        self.images = arr.permute(0, 3, 1, 2).contiguous().to(device)
        self.image_size = image_size

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.images[idx].float().mul_(2.0 / 255.0).sub_(1.0)   # (B, 3, H, W) in [-1, 1]
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=True)
        return x

    def __len__(self) -> int:
        return len(self.images)


@torch.no_grad()
def embed_all(model: DVBPR, batches: ItemImages, chunk: int = 1024) -> torch.Tensor:
    was = model.training
    model.eval()
    out = [model.cnn(batches(torch.arange(s, min(s + chunk, len(batches)),
                                          device=batches.images.device)))
           for s in range(0, len(batches), chunk)]
    model.train(was)
    return torch.cat(out)                                           # (N, K)


def bpr_loss(model: DVBPR, batches: ItemImages, triplets: torch.Tensor, *, lambda_cnn: float,
             lambda_theta: float, decay: list[torch.Tensor] | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss, BPR term) of one batch of (u, i, j) triplets (B, 3), summed over the batch."""
    u, i, j = triplets[:, 0], triplets[:, 1], triplets[:, 2]
    # synthesise: phi of positives and negatives in one pass -> (2B, K)
    phi_i, phi_j = model.cnn(batches(torch.cat([i, j]))).chunk(2)
    theta_u = model.theta[u]                                              # (B, K)
    x_uij = (theta_u * (phi_i - phi_j)).sum(1)                            # (B,)
    # losses: every term weighted; weight 0 switches it off
    bpr = -F.logsigmoid(x_uij).sum()
    decay = model.cnn.weight_decay_terms() if decay is None else decay
    reg_cnn = 0.5 * lambda_cnn * sum(w.square().sum() for w in decay)
    reg_theta = 0.5 * lambda_theta * theta_u.square().sum()
    return bpr + reg_cnn + reg_theta, bpr


def train_dvbpr(dataset, *, out, seed: int = 0, device: str = "cpu", resume: bool = False,
                epochs: int = 20, minutes: float | None = None, max_steps: int | None = None,
                batch_size: int = 128, lr: float | None = None, lambda_cnn: float = 1e-3,
                lambda_theta: float = 1.0, k: int = 100, layout: str | None = None,
                width: float = 1.0, eval_negatives: int = 100, threads: int | None = None,
                half: bool = False, progress: bool = True, **unknown: Any) -> Path:
    """Train DVBPR on ``dataset`` (a ``gis.data.Dataset``); return the best checkpoint's path.

    ``out``: folder for the files listed in the module docstring. ``resume``: continue from
    ``out/train-state.safetensors`` (epoch, step, weights, Adam state, RNG) when it exists.
    ``epochs``: total epochs (a resumed run may raise it). ``minutes`` / ``max_steps``: budget of
    this run; on expiry the state is saved and the best model so far written.
    ``lr``: Adam learning rate (default per layout: 1e-3 for "32", 1e-4 as the paper otherwise).
    ``layout``: "32", "128" or "224" (default from the image resolution; images are resized
    to the layout's input). ``width`` scales every layer width (tiny test models).
    ``threads``: torch CPU threads (default: GIS_THREADS or all usable cores).
    ``half``: store the final model in float16.
    """
    if unknown:
        raise GisUsageError(f"unknown dvbpr trainer option(s): {', '.join(sorted(unknown))}; "
                            "known: epochs, minutes, max_steps, batch_size, lr, lambda_cnn, "
                            "lambda_theta, k, layout, width, eval_negatives, threads, half, "
                            "progress")
    t_start = time.monotonic()
    dev = _training.resolve_device(device)
    if dev.type == "cpu" or threads is not None:
        set_threads(threads)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = _slug(str(dataset.meta.get("name", "dataset")))
    final_path = out / f"{name}.safetensors"
    card_path = out / f"{name}.json"
    state_path = out / STATE_FILE
    if state_path.exists() and not resume:
        raise GisUsageError(f"{state_path} exists: pass resume=True (--resume) to continue that "
                            "run, or choose another output folder")

    init_gen = seed_everything(seed)
    state_tensors: dict[str, torch.Tensor] | None = None
    meta: dict[str, Any] = {}
    if resume and state_path.exists():
        state_tensors, meta = load_checkpoint(state_path)
        config = meta.get("config", {})
        lay = Layout.from_dict(config["layout"])
        k = int(config["k"])
        stored = config.get("hyper", {})
        batch_size = int(stored.get("batch_size", batch_size))  # step positions depend on it
        lr = lr if lr is not None else stored.get("lr")
        if int(config.get("num_users", -1)) != dataset.num_users or \
                int(config.get("num_items", -1)) != dataset.num_items:
            raise CheckpointError(f"{state_path} was trained on {config.get('num_users')} users"
                                  f" x {config.get('num_items')} items, not this dataset's "
                                  f"{dataset.num_users} x {dataset.num_items}")
    else:
        lay = get_layout(layout or _default_layout(dataset.resolution), width=width)
    base_layout = lay.name.split("x")[0]
    lr = float(lr if lr is not None else DEFAULT_LR.get(base_layout, 1e-4))
    hyper = {"epochs": int(epochs), "batch_size": int(batch_size), "lr": lr,
             "lambda_cnn": float(lambda_cnn), "lambda_theta": float(lambda_theta), "k": int(k),
             "optimizer": "Adam", "theta_init": "uniform(0, 0.01)", "cnn_init": "xavier_uniform",
             "augmentation": "none", "eval_negatives": int(eval_negatives),
             "dropout": lay.dropout}

    # ---- model, optimiser, data -------------------------------------------------------------
    model = DVBPR(lay, dataset.user_ids, k=k)
    model.reset_parameters(init_gen)
    model.to(dev).train()
    opt = torch.optim.Adam([{"params": list(model.cnn.parameters())},
                            {"params": [model.theta]}], lr=lr)
    decay = model.cnn.weight_decay_terms()
    train_state = TrainState()
    if state_tensors is not None:
        model.cnn.load_state_dict(unflatten(state_tensors, "model.cnn."))
        with torch.no_grad():
            model.theta.copy_(state_tensors["model.theta"])
        load_optimizer_state(opt, state_tensors, meta)
        for g in opt.param_groups:
            g["lr"] = lr
        load_rng_state(state_tensors)
        train_state = TrainState.from_meta(meta)

    batches = ItemImages(dataset.images, lay.image_size, dev)
    user_items = dataset.user_items()
    positives = user_positives(dataset.num_users, dataset.train, (dataset.val, dataset.test))
    val_eval = AUCEvaluator(dataset.val, positives, dataset.num_items,
                            num_negatives=eval_negatives, seed=seed + 1)
    test_eval = AUCEvaluator(dataset.test, positives, dataset.num_items,
                             num_negatives=eval_negatives, seed=seed + 2)
    pop = {"val": popularity_auc(val_eval, dataset.train),
           "test": popularity_auc(test_eval, dataset.train)}
    m = len(dataset.train)
    steps_per_epoch = math.ceil(m / batch_size)
    budget = Budget(minutes=minutes, steps=max_steps)
    runs = train_state.extra.setdefault("runs", [])
    runs.append({"command": command_line(), "machine": machine_info(dev),
                 "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
                     timespec="seconds"), "time_s": 0.0})
    elapsed0 = train_state.elapsed_s
    fingerprint = dataset_fingerprint(dataset)
    if state_tensors is not None and config.get("fingerprint", fingerprint) != fingerprint:
        raise CheckpointError(f"{state_path} was trained on other data (fingerprint "
                              f"{config.get('fingerprint')}, this dataset {fingerprint}): "
                              "start a new run in another folder")
    config = {"layout": lay.to_dict(), "k": k, "num_users": dataset.num_users,
              "num_items": dataset.num_items, "seed": int(seed), "hyper": hyper,
              "fingerprint": fingerprint}

    def evaluate() -> tuple[dict[str, float], torch.Tensor]:
        emb = embed_all(model, batches)
        theta = model.theta.detach()
        return val_eval(lambda rows: theta[rows] @ emb.T, device=dev), emb

    def card(finished: bool) -> dict[str, Any]:
        best = train_state.best
        return {
            "name": "dvbpr",
            "model": "DVBPR (Kang et al. 2017): x(u, X) = theta_u . phi(X), phi a CNN trained "
                     "end to end with BPR",
            "layout": lay.name, "image_size": lay.image_size, "input_range": [-1, 1], "k": k,
            "dataset": {"name": dataset.meta.get("name"), "users": dataset.num_users,
                        "items": dataset.num_items, "train_interactions": m,
                        "resolution": dataset.resolution, "fingerprint": fingerprint,
                        **{key: dataset.meta[key] for key in ("seed", "source", "version")
                           if key in dataset.meta}},
            "command": runs[0]["command"], "commands": [r["command"] for r in runs],
            "seed": int(seed), "hyperparameters": hyper,
            "training": {"finished": finished, "epochs_completed": train_state.epoch,
                         "steps": train_state.step, "best_epoch": best.get("epoch"),
                         "time_s": round(train_state.elapsed_s, 1),
                         "time_min": round(train_state.elapsed_s / 60, 2)},
            "metrics": {
                "protocol": f"AUC of the held-out item vs {eval_negatives} sampled negatives "
                            "per user (auc) and vs all non-interacted items (auc_all); ties 1/2",
                "val_auc": best.get("val_auc"), "val_auc_all": best.get("val_auc_all"),
                "test_auc": best.get("test_auc"), "test_auc_all": best.get("test_auc_all"),
                "popularity": {"val_auc": pop["val"]["auc"], "val_auc_all": pop["val"]["auc_all"],
                               "test_auc": pop["test"]["auc"],
                               "test_auc_all": pop["test"]["auc_all"]},
                "users_evaluated": best.get("test_users"),
            },
            "machine": runs[-1]["machine"], "runs": runs, "torch": torch.__version__,
            "history": train_state.history,
            "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }

    def checkpoint_and_maybe_keep(tag: dict[str, Any]) -> None:
        """Evaluate, keep the best (writing the final checkpoint), save the resumable state."""
        val, emb = evaluate()
        entry = {**tag, "val_auc": val["auc"], "val_auc_all": val["auc_all"]}
        if not train_state.best or val["auc"] > train_state.best["val_auc"]:
            theta = model.theta.detach()
            test = test_eval(lambda rows: theta[rows] @ emb.T, device=dev)
            train_state.best = {**tag, "val_auc": val["auc"], "val_auc_all": val["auc_all"],
                                "test_auc": test["auc"], "test_auc_all": test["auc_all"],
                                "test_users": test["users"]}
            entry.update(test_auc=test["auc"], test_auc_all=test["auc_all"], best=True)
        train_state.history.append(entry)
        _sync_time()
        if entry.get("best"):
            model.card = card(finished=False)
            save_dvbpr(model, final_path, half=half)
        save_state()
        return val

    def _sync_time() -> None:
        train_state.elapsed_s = elapsed0 + (time.monotonic() - t_start)
        runs[-1]["time_s"] = round(time.monotonic() - t_start, 1)

    def save_state() -> None:
        opt_t, opt_m = optimizer_state_tensors(opt)
        tensors = {**flatten(model.cnn.state_dict(), "model.cnn."),
                   "model.theta": model.theta.detach(), **opt_t, **rng_state_tensors()}
        save_checkpoint(state_path, tensors, {**opt_m, **train_state.to_meta(),
                                              "config": config, "format": "gis.dvbpr.state"})

    # ---- loop ----------------------------------------------------------------------------------
    stopped = False
    last_val = train_state.history[-1]["val_auc"] if train_state.history else float("nan")
    for epoch in range(train_state.epoch, epochs):
        triplets = sample_triplets(user_items, dataset.num_items, m,
                                   _epoch_generator(seed, epoch)).to(dev)
        first = train_state.step - epoch * steps_per_epoch
        loss_sum = torch.tensor(train_state.extra.get("loss_sum", 0.0), dtype=torch.float64,
                                device=dev)
        loss_n = int(train_state.extra.get("loss_n", 0))
        bar = _training.progress(range(first, steps_per_epoch), total=steps_per_epoch, initial=first,
                                desc=f"dvbpr epoch {epoch + 1}/{epochs}", enabled=progress)
        for s in bar:
            b = triplets[s * batch_size:(s + 1) * batch_size]                 # (B, 3)
            loss, bpr = bpr_loss(model, batches, b, lambda_cnn=lambda_cnn,
                                 lambda_theta=lambda_theta, decay=decay)
            # step
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += bpr.detach().double()
            loss_n += len(b)
            train_state.step += 1
            budget.tick()
            if s % 20 == 0 or s == steps_per_epoch - 1:
                mean = float(loss_sum) / max(loss_n, 1)
                if not math.isfinite(mean):
                    raise NonFiniteLossError(
                        f"dvbpr: BPR loss became {mean} at epoch {epoch + 1} step {s} "
                        f"(lr {lr}); lower the learning rate (-o lr=...)")
                bar.set_postfix(bpr=f"{mean:.4f}", val_auc=f"{last_val:.4f}")
            if budget.exhausted() and s < steps_per_epoch - 1:
                stopped = True
                break
        bar.close()
        mean_loss = float(loss_sum) / max(loss_n, 1)
        if stopped:
            train_state.extra.update(loss_sum=float(loss_sum), loss_n=loss_n)
            checkpoint_and_maybe_keep({"epoch": epoch + 1, "partial": True,
                                       "step": train_state.step, "bpr": mean_loss})
            break
        train_state.epoch = epoch + 1
        train_state.extra.update(loss_sum=0.0, loss_n=0)
        val = checkpoint_and_maybe_keep({"epoch": epoch + 1, "step": train_state.step,
                                         "bpr": mean_loss})
        last_val = val["auc"]
        if progress:
            best = train_state.best
            bar.write(f"dvbpr epoch {epoch + 1}/{epochs}: bpr {mean_loss:.4f}  val AUC "
                      f"{val['auc']:.4f} (all {val['auc_all']:.4f})  best val {best['val_auc']:.4f}"
                      f" test {best['test_auc']:.4f}  popularity test {pop['test']['auc']:.4f}  "
                      f"[{(time.monotonic() - t_start) / 60:.1f} min]")
        if budget.exhausted() and epoch + 1 < epochs:
            stopped = True
            break

    # ---- finish --------------------------------------------------------------------------------
    finished = not stopped and train_state.epoch >= epochs
    if not train_state.best or not final_path.exists():  # nothing kept yet
        checkpoint_and_maybe_keep({"epoch": train_state.epoch, "step": train_state.step})
    train_state.done = finished
    _sync_time()
    save_state()
    # the final checkpoint holds the best weights; refresh its card with the closing facts
    tensors, fmeta = load_checkpoint(final_path)
    fmeta["card"] = card(finished=finished)
    save_checkpoint(final_path, tensors, fmeta)
    write_json(card_path, fmeta["card"])
    return final_path


__all__ = ["DEFAULT_LR", "LAYOUTS", "STATE_FILE", "bpr_loss", "dataset_fingerprint", "embed_all",
           "sample_triplets",
           "train_dvbpr"]
