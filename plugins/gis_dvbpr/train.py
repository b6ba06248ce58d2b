"""``python -m gis_dvbpr.train``: train DVBPR without installing gis (PYTHONPATH=.:plugins).

    PYTHONPATH=.:plugins python -m gis_dvbpr.train --data fashion-colors --out runs/dvbpr \
        --minutes 5 --device cuda

Writes ``OUT/<dataset>.safetensors`` (best model), ``OUT/<dataset>.json`` (model card) and
``OUT/train-state.safetensors`` (for ``--resume``). Same files as ``gis train recommender dvbpr``.
"""

from __future__ import annotations

import argparse
import sys

#: built-in plugins (entry-point name -> module) that must be there even when gis is not installed
BUILTINS = {"fashion_colors": "gis_fashion_colors", "dvbpr": "gis_dvbpr"}


def _ensure_builtin_plugins() -> None:
    """Run from a source checkout (PYTHONPATH=.:plugins), no entry points exist: register the
    built-in plugins this command needs by hand."""
    import importlib

    from gis import plugins

    plugins.load_plugins()
    for name, module_name in BUILTINS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        if not plugins.pm.is_registered(module) and plugins.pm.get_plugin(name) is None:
            plugins.register_plugin(module, name=name)


def _load_dataset(name: str, trust: bool):
    _ensure_builtin_plugins()
    from gis.data import load_dataset

    return load_dataset(name, trust=trust)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gis_dvbpr.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="fashion-colors", help="dataset name or path")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget of this run")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=None, help="default: 1e-3 for layout 32, else 1e-4")
    p.add_argument("--lambda-cnn", type=float, default=1e-3)
    p.add_argument("--lambda-theta", type=float, default=1.0)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--layout", default=None, choices=["32", "128", "224"])
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--half", action="store_true", help="store the final model in float16")
    p.add_argument("--trust", action="store_true", help="allow pickle-based data files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)

    from gis.errors import GisError

    from .trainer import train_dvbpr

    try:
        dataset = _load_dataset(a.data, a.trust)
        path = train_dvbpr(dataset, out=a.out, seed=a.seed, device=a.device, resume=a.resume,
                           epochs=a.epochs, minutes=a.minutes, max_steps=a.max_steps,
                           batch_size=a.batch_size, lr=a.lr, lambda_cnn=a.lambda_cnn,
                           lambda_theta=a.lambda_theta, k=a.k, layout=a.layout, width=a.width,
                           threads=a.threads, half=a.half, progress=not a.quiet)
    except GisError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"checkpoint: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
