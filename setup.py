"""Build of the compiled operators `gis._C` (everything else lives in pyproject.toml).

    pip install --no-build-isolation -e .        # or: python setup.py build_ext --inplace

Always compiles csrc/**/*.cpp; adds csrc/**/*.cu (and defines WITH_CUDA) only where a CUDA
toolkit (nvcc under CUDA_HOME) and a CUDA build of torch are both present. Environment:
  GIS_NO_CUDA=1             CPU-only build even where CUDA is available
  CUDA_HOME                 toolkit root; unset, /usr/local/cuda is preferred when it holds nvcc
  TORCH_CUDA_ARCH_LIST      GPU architectures (default "8.0;9.0": A100, H100/H200)
  MAX_JOBS                  parallel compile jobs (torch's ninja build)
Nothing is compiled at import time: without a build, gis.ops falls back to pure PyTorch (so an
isolated build, where torch is not importable, installs the package without gis._C).
"""

from __future__ import annotations

import glob
import os
import shutil

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _set_cuda_home() -> None:
    # torch guesses CUDA_HOME from nvcc's location; a wrapper in /usr/local/bin makes that
    # /usr/local, whose lib64 has no libcudart. Prefer a real toolkit root before torch looks.
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    candidates = ["/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    for root in candidates:
        if os.path.exists(os.path.join(root, "bin", "nvcc")) and glob.glob(
            os.path.join(root, "lib*", "libcudart.so*")
        ):
            os.environ["CUDA_HOME"] = root
            return


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _extensions():
    if not _truthy("GIS_NO_CUDA"):
        _set_cuda_home()
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:  # e.g. an isolated build environment without torch
        print(
            "gis._C: torch is not importable in this build environment; installing without the "
            "compiled operators (gis.ops falls back to PyTorch). Build them with "
            "`pip install --no-build-isolation .`"
        )
        return [], {}

    sources = sorted(
        os.path.relpath(p, HERE)
        for p in glob.glob(os.path.join(HERE, "csrc", "**", "*.cpp"), recursive=True)
        if os.sep + "test" + os.sep not in p
    )
    cuda_sources = sorted(
        os.path.relpath(p, HERE)
        for p in glob.glob(os.path.join(HERE, "csrc", "**", "*.cu"), recursive=True)
    )
    use_cuda = (
        not _truthy("GIS_NO_CUDA")
        and cpp_extension.CUDA_HOME is not None
        and torch.version.cuda is not None
        and bool(cuda_sources)
    )
    # -g0: no debug info (Python's own CFLAGS add -g); -fopenmp-simd: honour `omp simd` on the
    # CPU kernels' reductions (no OpenMP runtime). The C++ standard is the one torch picks.
    extra = {"cxx": ["-O3", "-g0", "-fopenmp-simd", "-Wno-unknown-pragmas", "-Wno-psabi"]}
    define_macros = []
    if use_cuda:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")  # A100, H100/H200
        extra["nvcc"] = ["-O3"]
        define_macros.append(("WITH_CUDA", None))
        ext_cls = cpp_extension.CUDAExtension
        sources = sources + cuda_sources
    else:
        ext_cls = cpp_extension.CppExtension
    print(f"gis._C: {'CUDA + CPU' if use_cuda else 'CPU only'} build of {len(sources)} sources")
    ext = ext_cls(
        name="gis._C",
        sources=sources,
        include_dirs=[os.path.join(HERE, "csrc")],
        define_macros=define_macros,
        extra_compile_args=extra,
    )
    return [ext], {"build_ext": cpp_extension.BuildExtension}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
