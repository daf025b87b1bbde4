"""How a run sets up torch, and the small helpers every run shares:
progress logging, device and thread selection, seeding, batch padding.

:func:`configure` is called by fitting, pretraining and classification
before any network runs; importing the package changes nothing in the
process (no environment variables, no torch settings).
"""
import os
import random
import sys
from typing import Callable, Sequence, Tuple

import numpy as np
import torch

from .config import PRECISIONS  # noqa: F401 (re-exported)
from .tokenizer import PAD_ID

# PyTorch's CPU convolutions (oneDNN) cache one compiled kernel per input
# shape, up to 1024 of them. Classifying reads in length-sorted batches
# meets hundreds of shapes, and the cache grew classify's memory from 0.8
# to 2.5 GB over a million ITS2 reads (docs/benchmarks.md). A small cache
# keeps memory flat at the same speed. oneDNN reads the variable when it
# creates its first kernel, so :func:`configure` sets it before the first
# forward pass of a run; an explicit setting in the environment wins.
ONEDNN_CACHE_VARIABLE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
ONEDNN_CACHE_CAPACITY = "8"


def log(msg: str) -> None:
    """Progress line on stderr (QIIME 2 shows it with --verbose)."""
    print(msg, file=sys.stderr, flush=True)


def quiet(msg: str) -> None:
    """A progress callback that prints nothing."""


def main_only(progress: Callable[[str], None]) -> Callable[[str], None]:
    """``progress`` on the main process, :func:`quiet` on the others."""
    from . import distributed as ddp
    return progress if ddp.is_main() else quiet


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; validates explicit names."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but PyTorch sees no "
                         "CUDA GPU; use device='cpu' or 'auto'.")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', not "
                         f"{device!r}.")
    return torch.device(device)




def resolve_precision(precision: str, device: torch.device) -> bool:
    """Whether the network runs under bfloat16 autocast (``bf16``) or not
    (``fp32``, the default: bf16 is opt-in until its calls are measured on
    a GPU; docs/gpu.md). The SSD scan, the softmax and the walk stay in
    float32 either way. On a CPU without AMX bf16 is slower than fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, "
                         f"not {precision!r}.")
    if precision == "bf16" and device.type == "cuda" \
            and not torch.cuda.is_bf16_supported():
        raise ValueError("precision='bf16' was requested but this GPU does "
                         "not support bfloat16; use precision='fp32'.")
    return precision == "bf16"


def autocast(device: torch.device, bf16: bool):
    """bfloat16 autocast on ``device`` when ``bf16``, else a no-op."""
    import contextlib
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def set_threads(n_threads: int) -> None:
    """Torch CPU threads; 0 (or less) keeps torch's default."""
    if n_threads and n_threads > 0:
        torch.set_num_threads(n_threads)


def configure(device: str = "auto", n_threads: int = 0,
              tf32: bool = False) -> torch.device:
    """Set torch up for one run and return its device.

    Sets a small oneDNN kernel cache unless the environment names one,
    the number of CPU threads (0 = torch's default) and, with ``tf32`` on a
    GPU, TF32 matrix products.
    """
    os.environ.setdefault(ONEDNN_CACHE_VARIABLE, ONEDNN_CACHE_CAPACITY)
    set_threads(n_threads)
    dev = resolve_device(device)
    if tf32 and dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def pad_batch(token_lists: Sequence[Sequence[int]], device) -> Tuple[
        torch.Tensor, torch.Tensor]:
    """Right-pad token id lists -> tokens (B, L) long, mask (B, L) bool."""
    L = max(1, max(len(t) for t in token_lists))
    tokens = torch.full((len(token_lists), L), PAD_ID, dtype=torch.long)
    for i, t in enumerate(token_lists):
        tokens[i, :len(t)] = torch.as_tensor(t, dtype=torch.long)
    tokens = tokens.to(device)
    return tokens, tokens != PAD_ID


def release_memory() -> None:
    """Give freed heap memory back to the operating system (glibc's
    ``malloc_trim``; a no-op elsewhere). Called between chunks of a long
    classification: the k-mer search allocates arrays of many sizes, and
    without trimming the heap's free pieces stay counted in the RSS."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
