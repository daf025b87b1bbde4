"""Runtime selection of the optional Mamba-2 CUDA kernels.

The fused kernels of ``mamba-ssm`` (Triton SSD scan; Dao & Gu 2024,
Transformers are SSMs (Mamba-2), arXiv 2405.21060) and ``causal-conv1d`` are
optional. They are imported lazily, on first request, and only from inside
:func:`mamba_kernels`; importing this module never imports ``mamba_ssm``,
``triton`` or ``causal_conv1d``. Any failure (not installed, built against
another CUDA/torch, no driver, ...) means "no kernels" and the pure PyTorch
path in :mod:`q2_barcodemamba.core.ssd` is used instead.
"""
import functools
import importlib
from typing import Callable, NamedTuple, Optional

KERNEL_INSTALL_HINT = (
    'pip install "q2-barcodemamba[cuda]" (needs the CUDA toolkit with nvcc; '
    'builds mamba-ssm and causal-conv1d from source)')


class MambaKernels(NamedTuple):
    mamba_chunk_scan_combined: Callable
    causal_conv1d_fn: Callable


@functools.lru_cache(maxsize=None)
def mamba_kernels() -> Optional[MambaKernels]:
    """The CUDA kernels as a named tuple, or None when they cannot be loaded.

    The result is cached; call ``mamba_kernels.cache_clear()`` to retry.
    """
    try:
        ssd = importlib.import_module("mamba_ssm.ops.triton.ssd_combined")
        conv = importlib.import_module("causal_conv1d")
        return MambaKernels(ssd.mamba_chunk_scan_combined,
                            conv.causal_conv1d_fn)
    except Exception:  # ImportError, broken builds, CUDA/Triton init errors
        return None


def kernels_available() -> bool:
    """True when the optional mamba-ssm / causal-conv1d kernels load."""
    return mamba_kernels() is not None
