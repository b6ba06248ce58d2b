"""BPR training of DVBPR end to end (Kang et al. 2017), resumable, CPU or GPU.

Each epoch draws |train interactions| triplets (u uniform over users with training items, i
uniform among u's items, j uniform among the items u never trained on) and takes Adam steps on

    L = -sum_b log sigmoid(theta_u . (phi(X_i) - phi(X_j)))
        + lambda_cnn / 2 * sum ||W||^2 (CNN weights, not biases)
        + lambda_theta / 2 * sum_b ||theta_u||^2           (users of the batch)

over batches of 128. No data augmentation. After every epoch the validation AUC (100 sampled
negatives per user) is measured and the best weights are kept as the final checkpoint, with the
test AUC (100 negatives and all items) and a popularity baseline in its model card.

The run itself (resume, budget, log, progress) is gis's training skeleton
(:mod:`gis.training.run`); :class:`DVBPRTrainer` is one BPR batch per step, with the epoch's
evaluation at its end. Files in the run folder:
    <dataset>.safetensors   the best model so far (loads with the plugin factory)
    <dataset>.json          its model card
    train-state.safetensors resumable state: current weights, Adam moments, RNG, loop position
    log.jsonl               mean BPR loss per sample, every 20 steps

Command line: ``gis train recommender dvbpr --data fashion-colors --out runs/dvbpr``
(``--help`` lists every setting of :class:`DVBPRTrainConfig`).
"""

from __future__ import annotations

import datetime
import hashlib
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.nn import functional as F

from gis.errors import CheckpointError, GisUsageError
from gis.interfaces import ModelCard
from gis.io import write_json
from gis.training import (
    Checkpoint,
    Trainer,
    TrainState,
    check_ranges,
    load_checkpoint,
    machine_info,
    save_checkpoint,
    setting,
    train,
)

from .checkpoint import save_dvbpr
from .metrics import AUCEvaluator, popularity_auc, user_positives
from .model import DVBPR, LAYOUTS, Layout, get_layout
from .robust import augmentation, robust_bpr_loss

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
    reg_cnn, reg_theta = bpr_regularisation(model, theta_u, lambda_cnn=lambda_cnn,
                                            lambda_theta=lambda_theta, decay=decay)
    return bpr + reg_cnn + reg_theta, bpr


def bpr_regularisation(model: DVBPR, theta_u: torch.Tensor, *, lambda_cnn: float,
                       lambda_theta: float, decay: list[torch.Tensor] | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """DVBPR's L2 terms (CNN weights, the batch's user vectors theta_u (B, K)), each halved."""
    decay = model.cnn.weight_decay_terms() if decay is None else decay
    return (0.5 * lambda_cnn * sum(w.square().sum() for w in decay),
            0.5 * lambda_theta * theta_u.square().sum())


@dataclass
class DVBPRTrainConfig:
    """Settings of a DVBPR run. A resumed run keeps its layout, ``k`` and batch size (and its
    learning rate unless ``lr`` is given); ``epochs`` may be raised to train on."""

    epochs: int = setting(20, "Total epochs of the run.")
    batch_size: int = setting(128, "Triplets per Adam step.")
    lr: float | None = setting(
        None, "Adam learning rate (default: 1e-3 for layout 32, else the paper's 1e-4).")
    lambda_cnn: float = setting(1e-3, "L2 weight decay of the CNN weights.")
    lambda_theta: float = setting(1.0, "L2 regularisation of the user vectors.")
    k: int = setting(100, "Embedding size K (user vectors and CNN output).")
    layout: Literal["32", "128", "224"] | None = setting(
        None, "CNN layout (default from the image resolution; images are resized to it).")
    width: float = setting(1.0, "Scales every layer width (tiny test models).")
    eval_negatives: int = setting(100, "Sampled negatives per user in the AUC.")
    half: bool = setting(False, "Store the final model in float16.")
    adv_eps: float = setting(
        0.0, "Adversarial training: L-inf radius of the image perturbations, in [0, 1] pixel "
             "units (e.g. 0.0157 = 4/255); 0 trains the paper's DVBPR.")
    adv_weight: float = setting(1.0, "Weight of the BPR loss on the perturbed images (AMR's "
                                     "lambda).")
    noise_std: float = setting(
        0.0, "Augmentation: Gaussian pixel noise of a std drawn per image from U(0, noise_std), "
             "[0, 1] pixel units; 0 turns it off.")

    @property
    def robust(self) -> bool:
        """Trained against perturbations (``gis_dvbpr.robust``), not the paper's plain BPR."""
        return self.adv_eps > 0 or self.noise_std > 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise GisUsageError(f"dvbpr needs epochs >= 1 and batch_size >= 1, got "
                                f"{self.epochs} and {self.batch_size}")
        if not (0.0 <= self.adv_eps <= 0.5 and self.adv_weight >= 0.0
                and 0.0 <= self.noise_std <= 1.0):
            raise GisUsageError(f"dvbpr needs 0 <= adv_eps <= 0.5, adv_weight >= 0 and "
                                f"0 <= noise_std <= 1, got {self.adv_eps}, {self.adv_weight} "
                                f"and {self.noise_std}")
        check_ranges(self, "dvbpr", positive=("lr", "k", "width", "eval_negatives"),
                     non_negative=("lambda_cnn", "lambda_theta"))


class BPREpochs:
    """The epoch bookkeeping the BPR trainers share (dvbpr's and vbpr's, both ``gis.training
    .Trainer``s): the run is ``config.epochs`` epochs of ``steps_per_epoch`` steps; the mean
    BPR loss accumulates in ``loss_sum``/``loss_n``; a session stopped within an epoch carries
    those sums in the state and evaluates where it stands (``_evaluate_and_keep``)."""

    #: fewer optimisation steps than this in a whole new run are too few to learn from
    FEW_STEPS = 500

    def _mean_loss(self) -> float:
        return float(self.loss_sum) / max(self.loss_n, 1)

    def _say_if_few_steps(self) -> None:
        """A new run whose epochs are a handful of steps (a small catalogue, the default batch
        of 128): one WARNING line with the fix, printed with the progress (a new user's trial:
        122 interactions were one step per epoch, validation AUC 0.47)."""
        total = self.config.epochs * self.steps_per_epoch
        if self.st["step"] == 0 and total < self.FEW_STEPS:
            self.run.write(
                f"WARNING: {self.name}: {self.num_train} training interactions make "
                f"{self.steps_per_epoch} step(s) of --batch-size {self.batch_size} per epoch, "
                f"{total} in all, too few to learn from: pass a smaller --batch-size (e.g. 16) "
                "and more --epochs, then check the validation AUC the run prints")

    def finished(self) -> bool:
        return self.st["epoch"] >= self.config.epochs

    def progress_position(self) -> tuple[float, float]:
        return float(self.st["step"]), float(self.config.epochs * self.steps_per_epoch)

    def log_fields(self) -> dict[str, Any]:
        return {"epoch": self.st["epoch"] + 1, "val_auc": round(self.last_val, 4)}

    def close(self) -> None:
        st = self.st
        if self._epoch is not None and st["step"] > st["epoch"] * self.steps_per_epoch:
            # stopped within an epoch: carry its loss sums, evaluate where it stands
            st["extra"].update(loss_sum=float(self.loss_sum), loss_n=self.loss_n)
            self._evaluate_and_keep({"epoch": st["epoch"] + 1, "partial": True,
                                     "step": st["step"], "bpr": self._mean_loss()})
        if not st["best"] or not self.final_path.exists():  # nothing kept yet
            self._evaluate_and_keep({"epoch": st["epoch"], "step": st["step"]})
        st["done"] = self.finished()
        self.runs[-1]["time_s"] = round(self.run.session_s, 1)


class DVBPRTrainer(BPREpochs, Trainer):
    """DVBPR (Kang et al. 2017): BPR on (user, liked item, other item) triplets, the CNN
    image embedding and the user vectors trained together; the best epoch is kept."""

    name = "dvbpr"
    Config = DVBPRTrainConfig
    checkpoint_file = STATE_FILE
    checkpoint_format = "gis.dvbpr.state"
    state_key = "train_state"
    log_every = 20

    def setup(self, carried: Checkpoint | None) -> tuple[int, dict[str, Any]]:
        c, ds = self.config, self.dataset
        lr = c.lr
        batch_size, k = int(c.batch_size), int(c.k)
        self.fingerprint = dataset_fingerprint(ds)
        if carried is not None:
            config = carried.meta.get("config", {})
            lay = Layout.from_dict(config["layout"])
            k = int(config["k"])
            stored = config.get("hyper", {})
            batch_size = int(stored.get("batch_size", batch_size))  # step positions depend on it
            lr = lr if lr is not None else stored.get("lr")
            if int(config.get("num_users", -1)) != ds.num_users or \
                    int(config.get("num_items", -1)) != ds.num_items:
                raise CheckpointError(f"{carried.path} was trained on {config.get('num_users')} "
                                      f"users x {config.get('num_items')} items, not this "
                                      f"dataset's {ds.num_users} x {ds.num_items}")
            if config.get("fingerprint", self.fingerprint) != self.fingerprint:
                raise CheckpointError(f"{carried.path} was trained on other data (fingerprint "
                                      f"{config.get('fingerprint')}, this dataset "
                                      f"{self.fingerprint}): start a new run in another folder")
            seed = int(config.get("seed", self.run.options.seed))
            state = asdict(TrainState.from_meta(carried.meta))
            state.update({key: v for key, v in carried.meta["train_state"].items()
                          if key not in state})
        else:
            lay = get_layout(c.layout or _default_layout(ds.resolution), width=c.width)
            seed = int(self.run.options.seed)
            state = asdict(TrainState())
        self.lay, self.k, self.batch_size = lay, k, batch_size
        self.lr = float(lr if lr is not None else DEFAULT_LR.get(lay.name.split("x")[0], 1e-4))
        self.hyper = {"epochs": int(c.epochs), "batch_size": batch_size, "lr": self.lr,
                      "lambda_cnn": float(c.lambda_cnn), "lambda_theta": float(c.lambda_theta),
                      "k": k, "optimizer": "Adam", "theta_init": "uniform(0, 0.01)",
                      "cnn_init": "xavier_uniform", "augmentation": augmentation(c),
                      "eval_negatives": int(c.eval_negatives), "dropout": lay.dropout}
        self.config_meta = {"layout": lay.to_dict(), "k": k, "num_users": ds.num_users,
                            "num_items": ds.num_items, "seed": seed, "hyper": self.hyper,
                            "fingerprint": self.fingerprint}
        name = _slug(str(ds.meta.get("name", "dataset")))
        self.final_path = self.run.out / f"{name}.safetensors"
        self.card_path = self.run.out / f"{name}.json"
        self.st = state
        return seed, state

    def build(self) -> None:
        ds, dev, c = self.dataset, self.run.device, self.config
        self.model = DVBPR(self.lay, ds.user_ids, k=self.k)
        self.model.reset_parameters(torch.Generator().manual_seed(self.run.seed))
        self.model.to(dev).train()
        self.opt = torch.optim.Adam([{"params": list(self.model.cnn.parameters())},
                                     {"params": [self.model.theta]}], lr=self.lr)
        self.decay = self.model.cnn.weight_decay_terms()
        self.robust_rng = torch.Generator(device=dev).manual_seed(self.run.seed + 3)
        self.batches = ItemImages(ds.images, self.lay.image_size, dev)
        self.user_items = ds.user_items()
        positives = user_positives(ds.num_users, ds.train, (ds.val, ds.test))
        self.val_eval = AUCEvaluator(ds.val, positives, ds.num_items,
                                     num_negatives=c.eval_negatives, seed=self.run.seed + 1)
        self.test_eval = AUCEvaluator(ds.test, positives, ds.num_items,
                                      num_negatives=c.eval_negatives, seed=self.run.seed + 2)
        self.pop = {"val": popularity_auc(self.val_eval, ds.train),
                    "test": popularity_auc(self.test_eval, ds.train)}
        self.num_train = len(ds.train)
        self.steps_per_epoch = math.ceil(self.num_train / self.batch_size)
        self._say_if_few_steps()
        self.runs = self.st["extra"].setdefault("runs", [])
        self.runs.append({"command": self.run.commands[-1], "machine": machine_info(dev),
                          "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
                              timespec="seconds"), "time_s": 0.0})
        history = self.st["history"]
        self.last_val = history[-1]["val_auc"] if history else float("nan")
        self._epoch: int | None = None  # the epoch whose triplets are drawn

    def restore(self, ckpt: Checkpoint) -> None:
        super().restore(ckpt)
        for g in self.opt.param_groups:  # this session's lr (given, or the run's)
            g["lr"] = self.lr

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model.": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optim.": self.opt}

    def generators(self) -> dict[str, torch.Generator]:
        c = self.config  # the paper's DVBPR draws nothing besides its epoch triplets
        return {"robust": self.robust_rng} if c.robust else {}

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"config": self.config_meta}

    def reserve_s(self) -> float:
        return 0.0  # the session's end evaluates and saves within its budget, as before

    # ----------------------------------------------------------------- loop
    def _begin_epoch(self) -> None:
        """The current epoch's triplets and its loss sums so far (a resumed partial epoch)."""
        epoch, extra = self.st["epoch"], self.st["extra"]
        self.triplets = sample_triplets(self.user_items, self.dataset.num_items, self.num_train,
                                        _epoch_generator(self.run.seed, epoch)).to(
            self.run.device)
        self.loss_sum = torch.tensor(extra.get("loss_sum", 0.0), dtype=torch.float64,
                                     device=self.run.device)
        self.loss_n = int(extra.get("loss_n", 0))
        self._epoch = epoch

    def step(self) -> dict[str, torch.Tensor]:
        if self._epoch != self.st["epoch"]:
            self._begin_epoch()
        s = self.st["step"] - self.st["epoch"] * self.steps_per_epoch
        b = self.triplets[s * self.batch_size:(s + 1) * self.batch_size]          # (B, 3)
        c = self.config
        if c.robust:
            loss, bpr = robust_bpr_loss(
                self.model, self.batches, b, lambda_cnn=c.lambda_cnn,
                lambda_theta=c.lambda_theta, adv_eps=c.adv_eps, adv_weight=c.adv_weight,
                noise_std=c.noise_std, generator=self.robust_rng, decay=self.decay)
        else:
            loss, bpr = bpr_loss(self.model, self.batches, b, lambda_cnn=c.lambda_cnn,
                                 lambda_theta=c.lambda_theta, decay=self.decay)
        # step
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.loss_sum += bpr.detach().double()
        self.loss_n += len(b)
        return {"bpr": bpr.detach() / len(b)}

    def advance(self, dt: float) -> None:
        st = self.st
        epoch = st["epoch"]
        if st["step"] - epoch * self.steps_per_epoch < self.steps_per_epoch:
            return
        mean_loss = self._mean_loss()
        st["epoch"] = epoch + 1
        st["extra"].update(loss_sum=0.0, loss_n=0)
        val = self._evaluate_and_keep({"epoch": epoch + 1, "step": st["step"], "bpr": mean_loss})
        self.last_val = val["auc"]
        best, pop = st["best"], self.pop
        self.run.write(f"dvbpr epoch {epoch + 1}/{self.config.epochs}: bpr {mean_loss:.4f}  val "
                       f"AUC {val['auc']:.4f} (all {val['auc_all']:.4f})  best val "
                       f"{best['val_auc']:.4f} test {best['test_auc']:.4f}  popularity test "
                       f"{pop['test']['auc']:.4f}  [{self.run.session_s / 60:.1f} min]")


    # ----------------------------------------------------------------- evaluation / export
    def _evaluate_and_keep(self, tag: dict[str, Any]) -> dict[str, float]:
        """Evaluate, keep the best (writing the final checkpoint), save the resumable state."""
        st, dev, model = self.st, self.run.device, self.model
        emb = embed_all(model, self.batches)
        theta = model.theta.detach()
        val = self.val_eval(lambda rows: theta[rows] @ emb.T, device=dev)
        entry = {**tag, "val_auc": val["auc"], "val_auc_all": val["auc_all"]}
        if not st["best"] or val["auc"] > st["best"]["val_auc"]:
            test = self.test_eval(lambda rows: theta[rows] @ emb.T, device=dev)
            st["best"] = {**tag, "val_auc": val["auc"], "val_auc_all": val["auc_all"],
                          "test_auc": test["auc"], "test_auc_all": test["auc_all"],
                          "test_users": test["users"]}
            entry.update(test_auc=test["auc"], test_auc_all=test["auc_all"], best=True)
        st["history"].append(entry)
        self.runs[-1]["time_s"] = round(self.run.session_s, 1)
        if entry.get("best"):
            model.card = ModelCard.from_dict(self._card(finished=False))
            save_dvbpr(model, self.final_path, half=self.config.half)
        self.run.save_checkpoint()
        return val

    def _card(self, finished: bool) -> dict[str, Any]:
        st, ds, best, pop = self.st, self.dataset, self.st["best"], self.pop
        return {
            "name": "dvbpr",
            "model": "DVBPR (Kang et al. 2017): x(u, X) = theta_u . phi(X), phi a CNN trained "
                     "end to end with BPR",
            "layout": self.lay.name, "image_size": self.lay.image_size, "input_range": [-1, 1],
            "k": self.k,
            "dataset": {"name": ds.meta.get("name"), "users": ds.num_users,
                        "items": ds.num_items, "train_interactions": self.num_train,
                        "resolution": ds.resolution, "fingerprint": self.fingerprint,
                        **{key: ds.meta[key] for key in ("seed", "source", "version")
                           if key in ds.meta}},
            "command": self.runs[0]["command"], "commands": [r["command"] for r in self.runs],
            "seed": self.run.seed, "hyperparameters": self.hyper,
            "training": {"finished": finished, "epochs_completed": st["epoch"],
                         "steps": st["step"], "best_epoch": best.get("epoch"),
                         "time_s": round(st["elapsed_s"], 1),
                         "time_min": round(st["elapsed_s"] / 60, 2)},
            "metrics": {
                "protocol": f"AUC of the held-out item vs {self.config.eval_negatives} sampled "
                            "negatives per user (auc) and vs all non-interacted items (auc_all); "
                            "ties 1/2",
                "val_auc": best.get("val_auc"), "val_auc_all": best.get("val_auc_all"),
                "test_auc": best.get("test_auc"), "test_auc_all": best.get("test_auc_all"),
                "popularity": {"val_auc": pop["val"]["auc"], "val_auc_all": pop["val"]["auc_all"],
                               "test_auc": pop["test"]["auc"],
                               "test_auc_all": pop["test"]["auc_all"]},
                "users_evaluated": best.get("test_users"),
            },
            "machine": self.runs[-1]["machine"], "runs": self.runs, "torch": torch.__version__,
            "history": st["history"],
            "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }

    def export(self) -> Path:
        """The final checkpoint holds the best weights; refresh its card with the closing
        facts (and write the card beside it)."""
        tensors, fmeta = load_checkpoint(self.final_path)
        fmeta["card"] = self._card(finished=self.finished())
        save_checkpoint(self.final_path, tensors, fmeta)
        write_json(self.card_path, fmeta["card"])
        return self.final_path

    def summary(self) -> str:
        st, best = self.st, self.st["best"]
        return (f"dvbpr: {st['epoch']}/{self.config.epochs} epochs, {st['step']} steps, "
                f"{st['elapsed_s'] / 60:.1f} min; best val AUC {best.get('val_auc', float('nan')):.4f}"
                f" (epoch {best.get('epoch')}), its test AUC {best.get('test_auc', float('nan')):.4f}")


def train_dvbpr(dataset, **options: Any) -> Path:
    """Train DVBPR on ``dataset`` (a ``gis.data.Dataset``); return the best checkpoint's path.

    ``options``: the run options of :func:`gis.training.train` (``out``, ``seed``, ``device``,
    ``resume``, ``minutes``, ``max_steps``, ``threads``, ``progress``) and the fields of
    :class:`DVBPRTrainConfig`. ``resume``: continue from ``out/train-state.safetensors``
    (epoch, step, weights, Adam state, RNG). ``minutes`` / ``max_steps``: on expiry the state
    is saved and the best model so far written.
    """
    return train(DVBPRTrainer, dataset, **options)


__all__ = ["DEFAULT_LR", "LAYOUTS", "STATE_FILE", "DVBPRTrainConfig", "DVBPRTrainer", "ItemImages",
           "bpr_loss", "dataset_fingerprint", "embed_all", "sample_triplets", "train_dvbpr"]
