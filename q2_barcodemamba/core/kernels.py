"""Runtime selection of the optional Mamba-2 CUDA kernels.

The fused SSD scan of ``mamba-ssm`` (Triton; Dao & Gu 2024, Transformers are
SSMs (Mamba-2), arXiv 2405.21060) and the depthwise causal convolution of
``causal-conv1d`` (CUDA C++) are optional. They are imported lazily, on first
request, and only from inside :func:`mamba_kernels`; importing this module
never imports ``mamba_ssm``, ``triton`` or ``causal_conv1d``. Any failure (not
installed, built against another CUDA/torch, no driver, ...) means "no
kernel" and the pure PyTorch path of :mod:`q2_barcodemamba.core.ssd` (or
``torch.nn.Conv1d`` for the convolution) is used instead. The two kernels are
independent: the Triton scan works without ``causal-conv1d``.

``mamba-ssm`` built with ``MAMBA_SKIP_CUDA_BUILD=TRUE`` (Triton only, no
nvcc needed; Mamba-2 needs nothing else) has no ``selective_scan_cuda``
extension, yet its package ``__init__`` imports the Mamba-1 modules that need
it. We therefore load ``mamba_ssm.ops.triton.ssd_combined`` under a bare
parent package when the normal import fails for that reason.
"""
import functools
import importlib
import importlib.util
import os
import sys
import types
from typing import Callable, NamedTuple, Optional

KERNEL_INSTALL_HINT = (
    'pip install "q2-barcodemamba[cuda]" (needs the CUDA toolkit with nvcc; '
    'builds mamba-ssm and causal-conv1d from source; '
    'MAMBA_SKIP_CUDA_BUILD=TRUE builds only the Triton kernels Mamba-2 uses)')

_SSD_MODULE = "mamba_ssm.ops.triton.ssd_combined"


class MambaKernels(NamedTuple):
    mamba_chunk_scan_combined: Optional[Callable]  # Triton SSD scan
    causal_conv1d_fn: Optional[Callable]           # CUDA depthwise conv


def _import_ssd():
    try:
        return importlib.import_module(_SSD_MODULE)
    except ImportError as err:
        if "selective_scan_cuda" not in str(err):
            raise
    # Triton-only build: give mamba_ssm a bare package object so that its
    # __init__ (Mamba-1 imports) does not run, then import the SSD module.
    for name in [m for m in sys.modules if m == "mamba_ssm"
                 or m.startswith("mamba_ssm.")]:
        del sys.modules[name]
    spec = importlib.util.find_spec("mamba_ssm")
    pkg = types.ModuleType("mamba_ssm")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__spec__ = spec
    sys.modules["mamba_ssm"] = pkg
    return importlib.import_module(_SSD_MODULE)


@functools.lru_cache(maxsize=None)
def mamba_kernels() -> Optional[MambaKernels]:
    """The available kernels as a named tuple (a field is None when that
    kernel is missing), or None when neither loads.

    The result is cached; call ``mamba_kernels.cache_clear()`` to retry.
    Setting the environment variable ``Q2_BARCODEMAMBA_KERNELS=0`` turns the
    kernels off (pure PyTorch everywhere), e.g. to compare the two paths.
    """
    if os.environ.get("Q2_BARCODEMAMBA_KERNELS", "1").lower() in (
            "0", "false", "no", "off"):
        return None
    scan = conv = None
    try:
        scan = _import_ssd().mamba_chunk_scan_combined
    except Exception:  # ImportError, broken builds, CUDA/Triton init errors
        scan = None
    try:
        conv = importlib.import_module("causal_conv1d").causal_conv1d_fn
    except Exception:
        conv = None
    if scan is None and conv is None:
        return None
    return MambaKernels(scan, conv)


def kernels_available() -> bool:
    """True when at least the mamba-ssm Triton scan loads."""
    k = mamba_kernels()
    return k is not None and k.mamba_chunk_scan_combined is not None


def describe() -> str:
    """One line for logs: which kernels a CUDA run would use."""
    k = mamba_kernels()
    scan = "mamba-ssm Triton" if k and k.mamba_chunk_scan_combined else "PyTorch"
    conv = "causal-conv1d CUDA" if k and k.causal_conv1d_fn else "PyTorch"
    return f"SSD scan: {scan}; causal conv: {conv}"
