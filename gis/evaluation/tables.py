"""Tables, JSON and figures of `gis evaluate`, rebuilt from the trial logs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..io import atomic_path, write_json, write_text
from ..provenance import record_fields, to_json
from .experiments import PAPER, EvalSettings, TrialLog
from .runs import TOP_K

METHODS = (("gis", "GIS"), ("dvbpr_personalized", "DVBPR personalized"),
           ("dvbpr_non_personalized", "DVBPR non-personalized"))


def _stats(values) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if len(v) == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "n": int(len(v))}


def _pm(st: dict, digits: int = 2) -> str:
    if st["mean"] is None:
        return "-"
    return f"{st['mean']:.{digits}f} ± {st['std']:.{digits}f}"


def _m(st: dict, digits: int = 2) -> str:
    return "-" if st["mean"] is None else f"{st['mean']:.{digits}f}"


def _share(num: int, den: int) -> str:
    return "-" if den == 0 else f"{num}/{den} ({100 * num / den:.0f} %)"


# ------------------------------------------------------------------------ image-level metrics
class ImageMetrics:
    """FID/KID against held-out real images and the (domain) Inception Score, cached."""

    def __init__(self, world, s: EvalSettings, cache: Path, device: str = "cpu"):
        self.world, self.s, self.cache, self.device = world, s, cache, device
        self._real = None
        self._is = None

    def real_features(self) -> np.ndarray:
        from ..metrics.inception import fid_features

        if self._real is None:
            ds = self.world.dataset
            n = min(self.s.fid_real, len(ds.heldout_images))
            path = self.cache / f"fid_real_{ds.meta.get('name', 'data')}_{n}.npy"
            if path.exists():
                self._real = np.load(path)
            else:
                real = torch.from_numpy(ds.heldout_images[:n]).permute(0, 3, 1, 2).float() / 255
                self._real = fid_features(real, device=self.device)
                with atomic_path(path) as tmp:
                    np.save(tmp, self._real)
        return self._real

    def __call__(self, images01: torch.Tensor) -> dict:
        from ..metrics.fid import frechet_distance, kid
        from ..metrics.inception import fid_features
        from ..metrics.inception_score import inception_score, is_classifier

        if self._is is None:
            self._is = is_classifier(self.world.dataset, device=self.device)
        probs_of, is_name, _ = self._is
        real = self.real_features()
        fake = fid_features(images01, device=self.device)
        n = len(fake)
        out = {"n_generated": n, "n_real": len(real)}
        if n >= 2:
            out["fid"] = frechet_distance(real, fake, method="eigh")
            size = min(1000, n, len(real))
            k_mean, k_std = kid(real, fake, subsets=100, subset_size=size)
            out.update(kid_mean=k_mean, kid_std=k_std, kid_subset_size=size)
        splits = max(1, min(10, n // 100))
        probs = probs_of(images01)
        m, sd = inception_score(probs, splits=splits)
        out.update(inception_score=float(m), inception_score_std=float(sd), is_splits=splits,
                   is_classifier=is_name)
        return out


def _fmt_fid(d: dict) -> str:
    if "fid" not in d:
        return "-"
    return f"{d['fid']:.1f} (KID {1000 * d['kid_mean']:.1f} ± {1000 * d['kid_std']:.1f} e-3, " \
           f"{d['n_generated']} vs {d['n_real']})"


def _images(log: TrialLog, records: list[dict], name: str) -> torch.Tensor:
    return torch.cat([log.load_images(r["key"])[name] for r in records])


def _truth(recs: list[dict]) -> dict:
    if not recs or "true_gain_top3" not in recs[0]:
        return {}
    wins = sum(r["recommender_gains"] for r in recs)
    true = sum(r["recommender_gains_that_are_true"] for r in recs)
    out = {"true_gain_top3": _stats(r["true_gain_top3"] for r in recs),
           "share_trials_true_gain_positive": float(np.mean([r["true_gain_top3"] > 0
                                                             for r in recs])),
           "recommender_gains": wins, "recommender_gains_that_are_true": true}
    if "true_gain_top3_vs_item" in recs[0]:
        out["true_gain_top3_vs_item"] = _stats(r["true_gain_top3_vs_item"] for r in recs)
    if all("realistic_share" in r for r in recs):  # logs written before the realism check
        out["realistic_share"] = _stats(r["realistic_share"] for r in recs)      # lack it
        out["recommender_gains_true_ignoring_realism"] = sum(
            r["recommender_gains_true_ignoring_realism"] for r in recs)
    return out


def _gis_block(recs: list[dict]) -> dict:
    """Summary of the GIS records of one table cell."""
    out = {"trials": len(recs),
           "top3": _stats(r["top3"] for r in recs),
           "reference_score": _stats(np.mean(r["reference_scores"]) for r in recs),
           "shift_vs_base": _stats(r["shift_vs_reference"] for r in recs),
           "top3_beats_base": int(sum(r["shift_vs_reference"] > 0 for r in recs)),
           "opposite_ssim": _stats(r.get("opposite_ssim") for r in recs),
           "ssim_diversity": _stats(r["ssim_diversity"] for r in recs),
           "lpips_diversity": _stats(r["lpips_diversity"] for r in recs),
           "category_preserved": _stats(r["category_preserved"] for r in recs),
           "median_rank_improvement": _stats(r["median_rank_improvement"] for r in recs),
           "share_users_rank_improved": _stats(r["share_users_rank_improved"] for r in recs),
           "coverage_anchor": _stats(r["coverage_anchor"] for r in recs),
           "coverage_best_variant": _stats(r["coverage_best_variant"] for r in recs),
           "min_user_shift": _stats(r["min_user_top3"] - r["min_user_reference"] for r in recs),
           "truth": _truth(recs)}
    if recs and "item_score" in recs[0]:
        out["item_score"] = _stats(r["item_score"] for r in recs)
        out["shift_vs_item"] = _stats(r["shift_vs_item"] for r in recs)
        out["top3_beats_item"] = int(sum(r["shift_vs_item"] > 0 for r in recs))
    return out


# ------------------------------------------------------------------------------ summaries
def summarise(experiment: str, records: list[dict], log: TrialLog, metrics: ImageMetrics,
              ds) -> dict:
    doc: dict = {"experiment": experiment, "trials_done": len(records),
                 "seconds_in_trials": float(sum(r["seconds"] for r in records))}
    if experiment == "table2":
        doc["methods"] = {}
        for key, label in METHODS:
            recs = [r[key] for r in records]
            block = _gis_block(recs)
            img = _images(log, records, "variants" if key == "gis" else key)
            block["images"] = metrics(img)
            doc["methods"][label] = block
    elif experiment == "table3":
        doc["kinds"] = {kind: _gis_block([r["gis"] for r in records if r["kind"] == kind])
                        for kind in ("unpreferred", "preferred")}
        doc["images"] = metrics(_images(log, records, "variants"))
    elif experiment == "table4":
        doc["categories"] = {}
        for c, name in enumerate(ds.category_names):
            recs = [r["gis"] for r in records if r["category"] == c]
            if recs:
                doc["categories"][name] = _gis_block(recs)
        doc["all"] = _gis_block([r["gis"] for r in records])
        doc["images"] = metrics(_images(log, records, "variants"))
    elif experiment == "table5":
        doc["n_users"] = {}
        for n_req in sorted({r["n_requested"] for r in records}):
            rs = [r for r in records if r["n_requested"] == n_req]
            block = _gis_block([r["gis"] for r in rs])
            block["n_used"] = rs[0]["n_used"]
            block["shifts"] = [r["gis"]["shift_vs_reference"] for r in rs]
            block["images"] = metrics(_images(log, rs, "variants"))
            doc["n_users"][str(n_req)] = block
    return doc


# ------------------------------------------------------------------------------ markdown
def _truth_cells(b: dict) -> list[str]:
    t = b.get("truth") or {}
    if not t:
        return ["-", "-"]
    return [_pm(t["true_gain_top3"]),
            _share(t["recommender_gains_that_are_true"], t["recommender_gains"])]


def markdown(experiment: str, doc: dict, s: EvalSettings, header: str) -> str:
    lines = [f"### {experiment}", "", header, ""]
    if experiment == "table2":
        lines += ["| method | pref (top-3) | paper | opposite SSIM | paper | SSIM diversity | "
                  "LPIPS diversity | IS | paper IS | FID (KID, samples) | category kept | "
                  "true gain (top-3) | recommender gains that are true |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for label, b in doc["methods"].items():
            p = PAPER["table2"][label]
            im = b["images"]
            lines.append(
                f"| {label} | {_pm(b['top3'])} | {p['pref']} | {_m(b['opposite_ssim'], 3)} | "
                f"{p['opposite_ssim']} | {_m(b['ssim_diversity'], 3)} | "
                f"{_m(b['lpips_diversity'], 3)} | {im['inception_score']:.2f} | {p['is']} | "
                f"{_fmt_fid(im)} | {_m(b['category_preserved'])} | "
                + " | ".join(_truth_cells(b)) + " |")
        im = doc["methods"]["GIS"]["images"]
        lines += ["", f"IS: {im['is_classifier']} ({im['is_splits']} split(s)); not comparable "
                  "with the paper's ImageNet IS. Opposite SSIM: GIS against its base G(z), DVBPR "
                  "personalized against its own starting sample; undefined (-) for plain "
                  "samples."]
    elif experiment == "table3":
        lines += ["| item | trials | real item score | base G(z*) score | pref (top-3) | paper "
                  "pref | shift vs base | paper shift | shift vs real item | top-3 > base | "
                  "true gain (top-3) | recommender gains that are true |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for kind, b in doc["kinds"].items():
            p = PAPER["table3"][kind]
            lines.append(
                f"| {kind} | {b['trials']} | {_m(b['item_score'])} | "
                f"{_m(b['reference_score'])} | {_pm(b['top3'])} | {p['pref']} | "
                f"{_pm(b['shift_vs_base'])} | {p['shift']} | {_pm(b['shift_vs_item'])} | "
                f"{_share(b['top3_beats_base'], b['trials'])} | "
                + " | ".join(_truth_cells(b)) + " |")
    elif experiment == "table4":
        lines += ["| category | trials | shift vs base | shift vs real item | top-3 > base | "
                  "category kept | true gain (top-3) | recommender gains that are true |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, b in list(doc["categories"].items()) + [("all", doc["all"])]:
            lines.append(
                f"| {name} | {b['trials']} | {_pm(b['shift_vs_base'])} | "
                f"{_pm(b['shift_vs_item'])} | {_share(b['top3_beats_base'], b['trials'])} | "
                f"{_m(b['category_preserved'])} | " + " | ".join(_truth_cells(b)) + " |")
        lines += ["", "Paper (Amazon Fashion, shift): " + ", ".join(
            f"{k} {v}" for k, v in PAPER["table4"].items()) + "."]
    elif experiment == "table5":
        lines += ["| N users (used) | trials | shift vs base (mean) | paper | min-user shift | "
                  "best variant in top-10 (users) | item in top-10 | users whose rank improved "
                  "| domain IS | FID (KID, samples) | true gain (top-3) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for n_req, b in doc["n_users"].items():
            im = b["images"]
            used = b["n_used"]
            nlabel = n_req if int(n_req) == used else f"{n_req} ({used}: all users)"
            lines.append(
                f"| {nlabel} | {b['trials']} | {_pm(b['shift_vs_base'])} | "
                f"{PAPER['table5'].get(int(n_req), '-')} | {_pm(b['min_user_shift'])} | "
                f"{_m(b['coverage_best_variant'], 3)} | {_m(b['coverage_anchor'], 3)} | "
                f"{_m(b['share_users_rank_improved'])} | {im['inception_score']:.2f} | "
                f"{_fmt_fid(im)} | {_truth_cells(b)[0]} |")
    if experiment in ("table3", "table4"):
        im = doc["images"]
        lines += ["", f"All variants: domain IS {im['inception_score']:.2f} "
                  f"({im['is_splits']} split(s)), FID {_fmt_fid(im)}."]
    return "\n".join(lines) + "\n"


def scale_header(s: EvalSettings, doc: dict) -> str:
    steps = "default" if s.shift_steps is None else str(s.shift_steps)
    inv = "default" if s.invert_steps is None else str(s.invert_steps)
    return (f"Scale: {doc['trials_done']} trials ({s.trials} per cell), shift steps {steps}, "
            f"inversion steps {inv}, n = {s.n or 'default'}, seed {s.seed}; "
            f"{doc['seconds_in_trials'] / 60:.1f} min of trials. Mean ± sample std over trials; "
            f"top-{TOP_K} of n per trial.")


# ------------------------------------------------------------------------------ figures
def figures(experiment: str, records: list[dict], log: TrialLog, out: Path, ds,
            doc: dict) -> list[Path]:
    from ..images import make_grid

    paths = []
    blank = np.full((1, 32, 32, 3), 255, np.uint8)

    if experiment == "table2":  # Fig. 4: GIS | DVBPR personalized | non-personalized
        tiles, labels = [], []
        for r in records[:6]:
            z = np.load(log.images / f"{r['key']}.npz")
            for key, _ in METHODS:
                imgs = z["variants"] if key == "gis" else z[key]
                order = np.argsort(r[key]["variant_scores"])[::-1][:4]
                first = z["base"] if key == "gis" else blank
                tiles += [first, imgs[order]]
                labels += [("G(z)" if key == "gis" else "")]
                short = {"gis": "GIS", "dvbpr_personalized": "pers.",
                         "dvbpr_non_personalized": "plain"}[key]
                labels += [f"{short} {r[key]['variant_scores'][i]:+.1f}" for i in order]
        path = out / "table2_grid.png"
        make_grid(np.concatenate(tiles), labels=labels, nrow=15, tile=64).save(path)
        paths.append(path)
    elif experiment in ("table3", "table4"):  # Fig. 5: item | base | variants best first
        tiles, labels = [], []
        picks = records[:8] if experiment == "table3" else _one_per(records, "category")
        for r in picks:
            z = np.load(log.images / f"{r['key']}.npz")
            g = r["gis"]
            order = np.argsort(g["variant_scores"])[::-1]
            tiles += [z["item"], z["base"], z["variants"][order]]
            tag = r.get("kind", r.get("item_category", ""))[:10]
            labels += [f"{tag} {g['item_score']:+.1f}", f"G(z*) {g['reference_scores'][0]:+.1f}"]
            labels += [f"{g['variant_scores'][i]:+.1f}" for i in order]
        ncol = 2 + len(records[0]["gis"]["variant_scores"])
        path = out / f"{experiment}_grid.png"
        make_grid(np.concatenate(tiles), labels=labels, nrow=ncol, tile=64).save(path)
        paths.append(path)
    elif experiment == "table5":  # Fig. 6: box plot of the shift per N
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        keys = list(doc["n_users"])
        fig, ax = plt.subplots(figsize=(7, 3.6), dpi=120)
        ax.boxplot([doc["n_users"][k]["shifts"] for k in keys], showmeans=True)
        used = [doc["n_users"][k]["n_used"] for k in keys]
        ax.set_xticks(range(1, len(keys) + 1),
                      [k if int(k) == u else f"{k}\n(={u})" for k, u in zip(keys, used, strict=True)])
        paper = [float(PAPER["table5"][int(k)]) if int(k) in PAPER["table5"] else np.nan
                 for k in keys]
        ax.plot(range(1, len(keys) + 1), paper, "x--", color="grey",
                label="paper (Amazon Fashion, mean)")
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xlabel("number of target users N")
        ax.set_ylabel(f"preference shift (top-{TOP_K} - base)")
        ax.set_title(f"Shift vs N ({ds.meta.get('name', '')}); triangles = mean")
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        path = out / "table5_boxplot.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def _one_per(records: list[dict], field: str) -> list[dict]:
    seen, out = set(), []
    for r in records:
        if r[field] not in seen:
            seen.add(r[field])
            out.append(r)
    return out


def write_outputs(experiment: str, records: list[dict], log: TrialLog, metrics: ImageMetrics,
                  s: EvalSettings, out: Path, ds) -> dict:
    doc = summarise(experiment, records, log, metrics, ds)
    doc["settings"] = {k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in vars(s).items()}
    doc["paper"] = PAPER[experiment]
    w = metrics.world  # the weights files, device, ops and threads of the process writing it
    doc["provenance"] = to_json(record_fields(
        metrics.device, generator=(w.generator, s.generator), recommender=(w.recommender,
                                                                             s.recommender),
        baseline_generator=(w.baseline_generator, s.baseline_generator)
        if w.baseline_generator is not None else None))
    md = markdown(experiment, doc, s, scale_header(s, doc))
    doc["figures"] = [p.name for p in figures(experiment, records, log, out, ds, doc)]
    write_json(out / f"{experiment}.json", doc)
    write_text(out / f"{experiment}.md", md)
    return doc
