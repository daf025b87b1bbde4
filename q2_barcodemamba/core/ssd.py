"""State-space duality (SSD) scan of Mamba-2, in pure PyTorch.

Reference: Dao & Gu 2024, Transformers are SSMs (Mamba-2), arXiv 2405.21060.

Both functions compute the same selective SSM with scalar-times-identity
state transitions. Per head the state is a (p, n) matrix S and, for t = 0..l-1,

    S_t = exp(dt_t * A) * S_{t-1} + dt_t * x_t ⊗ B_t      (outer product)
    y_t = S_t C_t + D * x_t

Shapes (b batch, l length, h heads, p head dim, g groups, n state size):
    x (b, l, h, p); dt (b, l, h), already positive (after softplus);
    A (h,) negative reals; B, C (b, l, g, n) with h % g == 0, head i reading
    group i // (h // g); D (h,) or None; states (b, h, p, n).

``ssd_scan_ref`` is the obviously-correct sequential recurrence (slow; used
in tests). ``ssd_scan_chunked`` is the chunked SSD algorithm: within a chunk
of L steps the output is a masked quadratic ("attention-like") form whose
mask holds the decays exp(segsum(dt*A)); across chunks only the (p, n)
states are passed on. There are no Python loops over time steps or chunks.

Computation is done in at least float32 (float64 stays float64) and ``y`` is
cast back to ``x.dtype``; final states are returned in the compute dtype.
"""
import torch
import torch.nn.functional as F


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half/bfloat16/float32 inputs, float64 for float64."""
    return torch.promote_types(dtype, torch.float32)


def _check_shapes(x, dt, A, B, C, D):
    b, l, h, p = x.shape
    g, n = B.shape[-2:]
    if dt.shape != (b, l, h):
        raise ValueError(f"dt must be {(b, l, h)}, got {tuple(dt.shape)}")
    if A.shape != (h,):
        raise ValueError(f"A must be ({h},), got {tuple(A.shape)}")
    if B.shape != (b, l, g, n) or C.shape != (b, l, g, n):
        raise ValueError(f"B and C must both be {(b, l, g, n)}, got "
                         f"{tuple(B.shape)} and {tuple(C.shape)}")
    if h % g:
        raise ValueError(f"nheads ({h}) must be divisible by ngroups ({g})")
    if D is not None and D.shape != (h,):
        raise ValueError(f"D must be ({h},), got {tuple(D.shape)}")
    return b, l, h, p, g, n


def ssd_scan_ref(x, dt, A, B, C, D=None, initial_states=None,
                 return_final_states=False):
    """Sequential SSM recurrence, one time step at a time (tests only)."""
    b, l, h, p, g, n = _check_shapes(x, dt, A, B, C, D)
    cd = _compute_dtype(x.dtype)
    xf, dtf, Af = x.to(cd), dt.to(cd), A.to(cd)
    Bh = B.to(cd).repeat_interleave(h // g, dim=2)        # (b, l, h, n)
    Ch = C.to(cd).repeat_interleave(h // g, dim=2)        # (b, l, h, n)
    if initial_states is None:
        S = x.new_zeros((b, h, p, n), dtype=cd)           # (b, h, p, n)
    else:
        S = initial_states.to(cd)                         # (b, h, p, n)
    ys = []
    for t in range(l):
        decay = torch.exp(dtf[:, t] * Af)                 # (b, h)
        inp = (dtf[:, t, :, None, None] * xf[:, t, :, :, None]
               * Bh[:, t, :, None, :])                    # (b, h, p, n)
        S = decay[:, :, None, None] * S + inp             # (b, h, p, n)
        ys.append(torch.einsum("bhpn,bhn->bhp", S, Ch[:, t]))  # (b, h, p)
    y = torch.stack(ys, dim=1) if ys else xf.new_zeros((b, 0, h, p))  # (b, l, h, p)
    if D is not None:
        y = y + xf * D.to(cd)[:, None]                    # (b, l, h, p)
    y = y.to(x.dtype)
    return (y, S) if return_final_states else y


def segsum(a):
    """Segment sums of ``a`` along its last axis, as a lower-triangular matrix.

    out[..., i, j] = a[..., j+1] + ... + a[..., i] for i >= j (0 on the
    diagonal) and -inf above it, so exp(out) is the causal decay mask. It is
    computed as differences of one cumulative sum; the masking happens
    *before* exp, so the (positive, possibly huge) upper triangle never
    overflows and its gradient is exactly zero.
    """
    T = a.shape[-1]
    cs = torch.cumsum(a, dim=-1)                          # (..., T)
    out = cs[..., :, None] - cs[..., None, :]             # (..., T, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=a.device).tril()
    return out.masked_fill_(~causal, -torch.inf)          # (..., T, T)


def ssd_scan_chunked(x, dt, A, B, C, chunk_size, D=None, initial_states=None,
                     return_final_states=False):
    """Chunked SSD scan; same semantics as :func:`ssd_scan_ref`.

    The length is zero-padded up to a multiple of ``chunk_size`` (dt = 0 on
    padding means decay 1 and no input, so final states are unaffected) and
    the padding is stripped from ``y``. Returns ``y`` (b, l, h, p), or
    ``(y, final_states)`` with final_states (b, h, p, n) when
    ``return_final_states``. Letters below: c chunks, L = chunk length
    (also s for the source position), k = heads per group (h = g * k).
    """
    b, l, h, p, g, n = _check_shapes(x, dt, A, B, C, D)
    cd = _compute_dtype(x.dtype)
    k, L = h // g, int(chunk_size)
    if L < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    pad = (-l) % L
    c = (l + pad) // L

    def pad_time(t):  # zero-pad dim 1 (time) by `pad` steps; no copy if pad == 0
        t = t.to(cd)
        return torch.cat([t, t.new_zeros((b, pad, *t.shape[2:]))], 1) if pad else t

    xf = pad_time(x)                                      # (b, c*L, h, p)
    dtf = pad_time(dt)                                    # (b, c*L, h)
    Bf = pad_time(B)                                      # (b, c*L, g, n)
    Cf = pad_time(C)                                      # (b, c*L, g, n)

    xc = xf.view(b, c, L, h, p)                           # (b, c, L, h, p)
    dtc = dtf.view(b, c, L, h)                            # (b, c, L, h)
    Bc = Bf.view(b, c, L, g, n)                           # (b, c, L, g, n)
    Cc = Cf.view(b, c, L, g, n)                           # (b, c, L, g, n)

    xdt = xc * dtc[..., None]                             # (b, c, L, h, p)
    dA = dtc * A.to(cd)                                   # (b, c, L, h)
    dA_cs = torch.cumsum(dA, dim=2)                       # (b, c, L, h)

    # 1. Intra-chunk outputs: y_l = sum_{s<=l} (C_l.B_s) exp(sum_{s<i<=l} dA_i) dt_s x_s
    decay = segsum(dA.permute(0, 1, 3, 2)).exp_()         # (b, c, h, L, L)
    CB = torch.einsum("bclgn,bcsgn->bcgls", Cc, Bc)       # (b, c, g, L, L)
    M = CB[:, :, :, None] * decay.view(b, c, g, k, L, L)  # (b, c, g, k, L, L)
    y_diag = torch.einsum("bcgkls,bcsgkp->bclgkp", M,
                          xdt.view(b, c, L, g, k, p))     # (b, c, L, g, k, p)

    # 2. State each chunk adds by its end (inputs decayed to the last step).
    decay_to_end = torch.exp(dA_cs[:, :, -1:] - dA_cs)    # (b, c, L, h)
    xdt_end = (xdt * decay_to_end[..., None]).view(b, c, L, g, k, p)  # (b, c, L, g, k, p)
    chunk_states = torch.einsum("bclgn,bclgkp->bcgkpn",
                                Bc, xdt_end).reshape(b, c, h, p, n)  # (b, c, h, p, n)

    # 3. Inter-chunk recurrence over chunk boundaries, as one segsum over chunks.
    if initial_states is None:
        init = xf.new_zeros((b, 1, h, p, n))              # (b, 1, h, p, n)
    else:
        init = initial_states.to(cd)[:, None]             # (b, 1, h, p, n)
    states = torch.cat([init, chunk_states], dim=1)       # (b, c+1, h, p, n)
    chunk_decay = F.pad(dA_cs[:, :, -1], (0, 0, 1, 0))    # (b, c+1, h)
    chunk_decay = torch.exp(segsum(chunk_decay.transpose(1, 2)))  # (b, h, c+1, c+1)
    states = torch.einsum("bhzc,bchpn->bzhpn", chunk_decay, states)  # (b, c+1, h, p, n)
    states_in, final_states = states[:, :-1], states[:, -1]  # (b, c, h, p, n), (b, h, p, n)

    # 4. Contribution of the state entering each chunk to that chunk's outputs.
    decay_from_start = torch.exp(dA_cs).view(b, c, L, g, k, 1)  # (b, c, L, g, k, 1)
    y_off = torch.einsum("bclgn,bcgkpn->bclgkp", Cc,
                         states_in.view(b, c, g, k, p, n))  # (b, c, L, g, k, p)
    y_off = y_off * decay_from_start                      # (b, c, L, g, k, p)

    y = (y_diag + y_off).reshape(b, c * L, h, p)[:, :l]   # (b, l, h, p)
    if D is not None:
        y = y + xf[:, :l] * D.to(cd)[:, None]             # (b, l, h, p)
    y = y.to(x.dtype)
    return (y, final_states) if return_final_states else y
