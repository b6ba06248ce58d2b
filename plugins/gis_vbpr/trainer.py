"""BPR training of VBPR (He & McAuley 2016) on frozen CNN features, resumable, CPU or GPU.

First the catalogue's features f_i are computed once with the frozen ImageNet trunk
(``gis_vbpr.features``) and cached in the run folder (``features.safetensors``, reused by a
resumed run when the images and the feature spec are the same). Then each epoch draws
|train interactions| triplets exactly as DVBPR's trainer does (u uniform over users with
training items, i uniform among u's items, j uniform among the items u never trained on;
``gis_dvbpr.trainer.sample_triplets``) and takes Adam steps on

    L = -sum_b log sigmoid(x(u, i) - x(u, j))
        + lambda_w / 2 * (||gamma_u||^2 + ||gamma_i||^2 + ||gamma_j||^2 + ||theta_u||^2)
        + lambda_b / 2 * (beta_i^2 + beta_j^2) + lambda_e / 2 * (||E||^2 + ||beta'||^2)

over batches of 128 (sums over the batch; the paper's SGD became Adam, as in cornac). After
every epoch the validation AUC is measured with DVBPR's protocol (``gis_dvbpr.metrics``: the
held-out validation/test item of each user against 100 sampled negatives, the same negatives
as DVBPR's trainer for the same seed, and against all items) and the best epoch is kept, with
its test AUC, the cold-start test AUC (visual part only) and the popularity baseline in its card.

Files in the run folder: ``<dataset>.safetensors`` (the best model; loads with the plugin
factory), ``<dataset>.json`` (its card), ``features.safetensors`` (the cached f_i),
``train-state.safetensors`` (resumable state), ``log.jsonl``.

Command line: ``gis train recommender vbpr --data fashion-colors --out runs/vbpr``.
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
from gis_dvbpr.metrics import AUCEvaluator, popularity_auc, user_positives
from gis_dvbpr.trainer import BPREpochs, dataset_fingerprint, sample_triplets
from torch.nn import functional as F

from gis.errors import CheckpointError, GisUsageError
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

from .features import FeatureSpec, VisualFeatures, extract, parse_layers
from .model import VBPRFactors, factors_meta, save_vbpr

STATE_FILE = "train-state.safetensors"
FEATURES_FILE = "features.safetensors"
#: Adam learning rate (cornac's VBPR default; fashion-colors, seed 0: val AUC 0.894 / 0.904 /
#: 0.909 after epochs 1-3, about 0.915 from epoch 8)
DEFAULT_LR = 5e-3


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "dataset"


def images_fingerprint(images: np.ndarray) -> str:
    """sha256 (16 hex digits) of the catalogue images: whether cached features still apply."""
    a = np.ascontiguousarray(images)
    return hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()[:16]


def feature_scale(features: torch.Tensor, blocks: list[int] | None = None) -> torch.Tensor:
    """Scale (F,) of catalogue features (N, F): std * sqrt(F). ``blocks`` None: per dimension,
    each std at least 1 % of the mean std (a dead channel of the catalogue must not blow up on
    a new image); else the sizes of consecutive blocks (the trunk's layers), each scaled by
    its mean std."""
    std = features.double().std(0)
    if blocks is None:
        std = std.clamp_min(1e-2 * float(std.mean()) + 1e-12)
    else:
        std = torch.cat([b.mean().expand(len(b)) for b in std.split(list(blocks))])
    return (std * math.sqrt(features.shape[1])).float()


def catalogue_features(spec: FeatureSpec, images: np.ndarray, cache: Path | None, *,
                       device: torch.device | str = "cpu", write=print) -> torch.Tensor:
    """Raw features f_i (N, F) float32 of the catalogue images (uint8 (N, H, W, 3)), read from
    ``cache`` when it holds this spec's features of these images, else computed and cached."""
    fp = images_fingerprint(images)
    if cache is not None and cache.is_file():
        tensors, meta = load_checkpoint(cache)
        if meta.get("spec") == spec.to_dict() and meta.get("images") == fp:
            return tensors["features"]
        write(f"vbpr: {cache} holds other features; computing them again")
    write(f"vbpr: computing {spec.name} features of {len(images)} catalogue images")
    net = VisualFeatures(spec).to(device)
    feats = extract(net, images, device=device)
    if cache is not None:
        save_checkpoint(cache, {"features": feats}, {"format": "gis.vbpr.features",
                                                     "spec": spec.to_dict(), "images": fp})
    return feats


def bpr_loss(factors: VBPRFactors, fn: torch.Tensor, triplets: torch.Tensor, *,
             lambda_w: float, lambda_b: float, lambda_e: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss, BPR term) of one batch of (u, i, j) triplets (B, 3), summed over the batch;
    ``fn`` (N, F) the normalised catalogue features."""
    u, i, j = triplets[:, 0], triplets[:, 1], triplets[:, 2]
    x_uij = factors.pair_scores(u, i, fn[i]) - factors.pair_scores(u, j, fn[j])      # (B,)
    bpr = -F.logsigmoid(x_uij).sum()
    f = factors
    reg = 0.5 * lambda_w * (f.gamma_user[u].square().sum() + f.gamma_item[i].square().sum()
                            + f.gamma_item[j].square().sum() + f.theta[u].square().sum())
    reg = reg + 0.5 * lambda_b * (f.beta_item[i].square().sum() + f.beta_item[j].square().sum())
    if lambda_e > 0:
        reg = reg + 0.5 * lambda_e * (f.E.square().sum() + f.beta_prime.square().sum())
    return bpr + reg, bpr


@dataclass
class VBPRTrainConfig:
    """Settings of a VBPR run. A resumed run keeps its features, K, D, visual bias and batch
    size (and its learning rate unless ``lr`` is given); ``epochs`` may be raised."""

    epochs: int = setting(20, "Total epochs of the run.")
    batch_size: int = setting(128, "Triplets per Adam step.")
    lr: float | None = setting(
        None, f"Adam learning rate (default {DEFAULT_LR}; a resumed run keeps its own).")
    k: int = setting(20, "Latent (non-visual) factors K of users and items.")
    d: int = setting(20, "Visual factors D (columns of E, size of theta_u).")
    lambda_w: float = setting(0.01, "L2 weight of gamma_u, gamma_i, gamma_j and theta_u.")
    lambda_b: float = setting(0.01, "L2 weight of the item biases beta_i, beta_j.")
    lambda_e: float = setting(0.0, "L2 weight of E and beta' (cornac's lambda_e; 0 as there).")
    visual_bias: bool = setting(True, "The visual bias beta' . f_i (the paper's eq. 2).")
    feature_net: Literal["alex", "vgg"] = setting(
        "alex", "ImageNet trunk of f (gis's LPIPS assets).")
    feature_layers: str = setting("12345", "ReLU layers of the trunk averaged into f (1..5).")
    feature_side: int = setting(64, "Side the images are resized to before the trunk.")
    feature_norm: Literal["dim", "layer"] = setting(
        "dim", "Scale of f: per dimension (its catalogue std) or per trunk layer.")
    eval_negatives: int = setting(100, "Sampled negatives per user in the AUC.")

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise GisUsageError(f"vbpr needs epochs >= 1 and batch_size >= 1, got "
                                f"{self.epochs} and {self.batch_size}")
        check_ranges(self, "vbpr", positive=("lr", "k", "d", "eval_negatives"),
                     non_negative=("lambda_w", "lambda_b", "lambda_e"))
        self.spec  # noqa: B018 - checks the feature settings before the run folder exists

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec(net=self.feature_net, layers=parse_layers(self.feature_layers),
                           side=int(self.feature_side))


class VBPRTrainer(BPREpochs, Trainer):
    """VBPR: BPR on (user, liked item, other item) triplets over latent and visual factors of
    frozen CNN features; the best epoch (validation AUC) is kept."""

    name = "vbpr"
    Config = VBPRTrainConfig
    checkpoint_file = STATE_FILE
    checkpoint_format = "gis.vbpr.state"
    state_key = "train_state"
    log_every = 50

    def setup(self, carried: Checkpoint | None) -> tuple[int, dict[str, Any]]:
        c, ds = self.config, self.dataset
        self.fingerprint = dataset_fingerprint(ds)
        lr, batch_size = c.lr, int(c.batch_size)
        spec, k, d, vb = c.spec, int(c.k), int(c.d), bool(c.visual_bias)
        norm = c.feature_norm
        if carried is not None:
            config = carried.meta.get("config", {})
            if int(config.get("num_users", -1)) != ds.num_users or \
                    int(config.get("num_items", -1)) != ds.num_items or \
                    config.get("fingerprint") != self.fingerprint:
                raise CheckpointError(f"{carried.path} was trained on other data (fingerprint "
                                      f"{config.get('fingerprint')}, this dataset "
                                      f"{self.fingerprint}): start a new run in another folder")
            spec = FeatureSpec.from_dict(config["features"])
            k, d, vb = int(config["k"]), int(config["d"]), bool(config["visual_bias"])
            norm = config.get("feature_norm", "dim")  # the scale itself is in the weights
            hyper = config.get("hyper", {})
            batch_size = int(hyper.get("batch_size", batch_size))
            lr = lr if lr is not None else hyper.get("lr")
            seed = int(config.get("seed", self.run.options.seed))
            state = asdict(TrainState.from_meta(carried.meta))
        else:
            seed = int(self.run.options.seed)
            state = asdict(TrainState())
        self.spec, self.k, self.d, self.vb = spec, k, d, vb
        self.lr = float(lr if lr is not None else DEFAULT_LR)
        self.batch_size = batch_size
        self.hyper = {"epochs": int(c.epochs), "batch_size": batch_size, "lr": self.lr,
                      "k": k, "d": d, "visual_bias": vb, "lambda_w": float(c.lambda_w),
                      "lambda_b": float(c.lambda_b), "lambda_e": float(c.lambda_e),
                      "optimizer": "Adam", "init": "xavier_uniform (gamma, theta, E, beta'), "
                      "zeros (beta_i)", "eval_negatives": int(c.eval_negatives),
                      "features": spec.name,
                      "feature_normalisation": "f / (std * sqrt(F)), std per "
                                               + ("dimension" if norm == "dim" else "layer")}
        self.norm = norm
        self.config_meta = {"k": k, "d": d, "visual_bias": vb, "features": spec.to_dict(),
                            "feature_norm": norm,
                            "num_users": ds.num_users, "num_items": ds.num_items, "seed": seed,
                            "hyper": self.hyper, "fingerprint": self.fingerprint}
        name = _slug(str(ds.meta.get("name", "dataset")))
        self.final_path = self.run.out / f"{name}.safetensors"
        self.card_path = self.run.out / f"{name}.json"
        self.st = state
        return seed, state

    def build(self) -> None:
        ds, dev, c = self.dataset, self.run.device, self.config
        raw = catalogue_features(self.spec, ds.images, self.run.out / FEATURES_FILE,
                                 device=dev, write=self.run.write)
        self.raw = raw.to(dev)
        self.factors = VBPRFactors(ds.num_users, ds.num_items, self.spec.dim, k=self.k,
                                   d=self.d, visual_bias=self.vb)
        self.factors.reset_parameters(torch.Generator().manual_seed(self.run.seed))
        with torch.no_grad():
            self.factors.feature_scale.copy_(feature_scale(raw, None if self.norm == "dim"
                                                           else self.spec.blocks))
        self.factors.to(dev).train()
        self.fn = self.factors.normalise(self.raw)                       # (N, F)
        self.opt = torch.optim.Adam(self.factors.trainable(), lr=self.lr)
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
        self._epoch: int | None = None

    def restore(self, ckpt: Checkpoint) -> None:
        super().restore(ckpt)
        for g in self.opt.param_groups:
            g["lr"] = self.lr

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"factors.": self.factors}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optim.": self.opt}

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"config": self.config_meta}

    def reserve_s(self) -> float:
        return 0.0

    # ----------------------------------------------------------------- loop
    def step(self) -> dict[str, torch.Tensor]:
        st = self.st
        if self._epoch != st["epoch"]:
            g = torch.Generator().manual_seed(self.run.seed * 1_000_003 + st["epoch"] + 1)
            self.triplets = sample_triplets(self.user_items, self.dataset.num_items,
                                            self.num_train, g).to(self.run.device)
            extra = st["extra"]
            self.loss_sum, self.loss_n = float(extra.get("loss_sum", 0.0)), \
                int(extra.get("loss_n", 0))
            self._epoch = st["epoch"]
        s = st["step"] - st["epoch"] * self.steps_per_epoch
        b = self.triplets[s * self.batch_size:(s + 1) * self.batch_size]           # (B, 3)
        c = self.config
        loss, bpr = bpr_loss(self.factors, self.fn, b, lambda_w=c.lambda_w,
                             lambda_b=c.lambda_b, lambda_e=c.lambda_e)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.loss_sum += float(bpr.detach())
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
        self.loss_sum, self.loss_n = 0.0, 0
        val = self._evaluate_and_keep({"epoch": epoch + 1, "step": st["step"], "bpr": mean_loss})
        self.last_val = val["auc"]
        best = st["best"]
        self.run.write(f"vbpr epoch {epoch + 1}/{self.config.epochs}: bpr {mean_loss:.4f}  val "
                       f"AUC {val['auc']:.4f}  best val {best['val_auc']:.4f} test "
                       f"{best['test_auc']:.4f} (cold {best['test_auc_cold']:.4f})  popularity "
                       f"test {self.pop['test']['auc']:.4f}  [{self.run.session_s / 60:.1f} min]")


    # ----------------------------------------------------------------- evaluation / export
    @torch.no_grad()
    def _evaluate_and_keep(self, tag: dict[str, Any]) -> dict[str, float]:
        st, dev, f, fn = self.st, self.run.device, self.factors, self.fn
        full = lambda rows: f.all_scores(rows, fn)                       # noqa: E731
        val = self.val_eval(full, device=dev)
        entry = {**tag, "val_auc": val["auc"], "val_auc_all": val["auc_all"]}
        if not st["best"] or val["auc"] > st["best"]["val_auc"]:
            test = self.test_eval(full, device=dev)
            cold = self.test_eval(lambda rows: f.all_scores(rows, fn, cold=True), device=dev)
            st["best"] = {**tag, "val_auc": val["auc"], "val_auc_all": val["auc_all"],
                          "test_auc": test["auc"], "test_auc_all": test["auc_all"],
                          "test_auc_cold": cold["auc"], "test_auc_cold_all": cold["auc_all"],
                          "test_users": test["users"]}
            entry.update(test_auc=test["auc"], test_auc_all=test["auc_all"],
                         test_auc_cold=cold["auc"], best=True)
        st["history"].append(entry)
        self.runs[-1]["time_s"] = round(self.run.session_s, 1)
        if entry.get("best"):
            save_vbpr(f, self.spec, self.dataset.user_ids, self.final_path,
                      card=self._card(finished=False))
        self.run.save_checkpoint()
        return val

    def _card(self, finished: bool) -> dict[str, Any]:
        st, ds, best, pop = self.st, self.dataset, self.st["best"], self.pop
        return {
            "name": "vbpr",
            "model": "VBPR (He & McAuley 2016): x(u, i) = beta_i + gamma_u . gamma_i + "
                     "theta_u . (E f_i) + beta' . f_i, f a frozen ImageNet CNN feature; a new "
                     "image scores theta_u . (E f(X)) + beta' . f(X)",
            "features": {**self.spec.to_dict(), "name": self.spec.name, "dim": self.spec.dim,
                         "weights": f"ImageNet {self.spec.net} conv trunk (gis asset "
                                    f"lpips-{self.spec.net})"},
            "image_size": self.spec.side, "input_range": [-1, 1], "k": self.k, "d": self.d,
            "visual_bias": self.vb,
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
                "protocol": f"DVBPR's: AUC of each user's held-out item vs "
                            f"{self.config.eval_negatives} sampled negatives (auc) and vs all "
                            "non-interacted items (auc_all); ties 1/2; cold: the visual part "
                            "only (theta_u . E f_i + beta' . f_i), as for a new image",
                **{key: best.get(key) for key in (
                    "val_auc", "val_auc_all", "test_auc", "test_auc_all", "test_auc_cold",
                    "test_auc_cold_all")},
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
        """Refresh the best checkpoint's card with the closing facts; write it beside it."""
        tensors, fmeta = load_checkpoint(self.final_path)
        fmeta["card"] = self._card(finished=self.finished())
        save_checkpoint(self.final_path, tensors, fmeta)
        write_json(self.card_path, fmeta["card"])
        return self.final_path

    def summary(self) -> str:
        st, best = self.st, self.st["best"]
        return (f"vbpr: {st['epoch']}/{self.config.epochs} epochs, {st['step']} steps, "
                f"{st['elapsed_s'] / 60:.1f} min; best val AUC "
                f"{best.get('val_auc', float('nan')):.4f} (epoch {best.get('epoch')}), its test "
                f"AUC {best.get('test_auc', float('nan')):.4f}")


def train_vbpr(dataset, **options: Any) -> Path:
    """Train VBPR on ``dataset`` (a ``gis.data.Dataset``); return the best checkpoint's path.
    ``options``: the run options of :func:`gis.training.train` (``out``, ``seed``, ``device``,
    ``resume``, ``minutes``, ``max_steps``, ``threads``, ``progress``) and the fields of
    :class:`VBPRTrainConfig`."""
    return train(VBPRTrainer, dataset, **options)


__all__ = ["DEFAULT_LR", "FEATURES_FILE", "STATE_FILE", "VBPRTrainConfig", "VBPRTrainer", "bpr_loss",
           "catalogue_features", "factors_meta", "feature_scale", "train_vbpr"]
