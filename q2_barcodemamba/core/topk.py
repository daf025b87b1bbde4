"""Top-m of long rows in two passes: block maxima, then the best blocks.

``torch.topk`` over the 42,000 lineage probabilities of a read, or over a
block of 16,384 reference similarities, spends most of its time on the
selection itself (0.06-0.08 ms per row on 2 CPU cores, as long as a
matrix product of the same row). :func:`topk` finds the same values with
one cheap reduction and two small selections:

1. the maximum of every block of ``block`` consecutive entries;
2. the ``m`` blocks with the largest maxima;
3. the top ``m`` among those blocks' ``m * block`` entries.

It is exact: let v be the m-th largest value of the row. Every entry
above v lies in a block whose maximum is above v, and there are fewer
than m such blocks, so all of them are chosen; the remaining chosen
blocks have maxima of at least v. The chosen blocks therefore hold at
least m entries >= v, and their top m has the row's top-m values.
Among entries equal to the m-th value, which ones are returned is not
specified (as with ``torch.topk``). Skipping blocks by their maxima is
the idea of block-max indexes in top-k retrieval (Ding & Suel 2011);
over a dense row it needs no index and loses nothing.
"""
import torch

BLOCK = 32        # entries per block: within 10 % of the fastest of 16-256
                  # on float rows (16 of 41,712 or 417,120; 32 of 16,384)
MIN_RATIO = 8     # rows shorter than MIN_RATIO * m * block use torch.topk


def topk(x: torch.Tensor, m: int, block: int = BLOCK, sorted: bool = True):
    """``(values, indices)`` of the ``m`` largest entries of each row of the
    2-D tensor ``x``, as ``x.topk(m, dim=1, sorted=sorted)`` returns them
    (same values; among ties the indices may differ). On a GPU, and for
    rows shorter than ``MIN_RATIO * m * block``, it is ``torch.topk``."""
    if x.dim() != 2:
        raise ValueError(f"topk expects a 2-D tensor, got {x.dim()} dims.")
    B, n = x.shape
    if m < 0 or m > n:
        raise ValueError(f"m must be in [0, {n}], got {m}.")
    if n < MIN_RATIO * m * block or B == 0 or m == 0 \
            or x.device.type != "cpu":    # measured on CPUs only
        return x.topk(m, dim=1, sorted=sorted)
    full = n // block
    best = x[:, :full * block].reshape(B, full, block).amax(2)    # (B, full)
    if full * block < n:                      # the short last block
        best = torch.cat([best, x[:, full * block:].amax(1, keepdim=True)],
                         1)
    blocks = best.topk(m, dim=1, sorted=False).indices            # (B, m)
    idx = (blocks[:, :, None] * block
           + torch.arange(block, device=x.device)).reshape(B, m * block)
    vals = x.gather(1, idx.clamp(max=n - 1))
    if full * block < n:                      # positions past the row's end
        low = (-torch.inf if x.is_floating_point()
               else torch.iinfo(x.dtype).min)
        vals = vals.masked_fill(idx >= n, low)
    v, pick = vals.topk(m, dim=1, sorted=sorted)
    return v, idx.gather(1, pick)
