"""Plot the loss curves of a `gis shift` run (result.json) into a PNG.

    python scripts/plot_loss_curves.py RUN_DIR/result.json docs/img/loss_curves.png
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str, dst: str) -> None:
    doc = json.loads(open(src).read())
    inv = (doc.get("inversion") or {}).get("history")
    h = doc["history"]
    extra = [k for k in h if k not in ("ce", "mae", "pref", "total")]  # e.g. the seller terms
    panels = (3 if inv else 2) + bool(extra)
    fig, axes = plt.subplots(1, panels, figsize=(4.4 * panels, 3.4))
    k = 0
    if inv:
        ax = axes[0]
        ax.plot(inv["lpips"], label="LPIPS (VGG)")
        ax.plot(inv["mse"], label="MSE")
        ax.set_title(f"inversion ({len(inv['lpips'])} steps)")
        ax.set_xlabel("step")
        ax.legend()
        k = 1
    ax = axes[k]
    ax.plot(h["pref"], color="tab:green")
    ax.set_title(f"shifting: preference ({doc['optimised_aggregation']}) of the variants")
    ax.set_xlabel("step")
    ax = axes[k + 1]
    ax.plot(h["ce"], label="cross-entropy")
    ax.plot(h["mae"], label="shift MAE")
    ax.set_yscale("log")
    ax.set_title("shifting: predictor terms")
    ax.set_xlabel("step")
    ax.legend()
    if extra:
        ax = axes[k + 2]
        for name in extra:
            ax.plot(h[name], label=name)
        ax.set_title("shifting: the seller recipe's terms")
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:3])
