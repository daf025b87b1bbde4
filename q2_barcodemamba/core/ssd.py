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
states are passed on (a loop over the few chunks, none over time steps).

Computation is done in at least float32 (float64 stays float64) and ``y`` is
cast back to ``x.dtype``; final states are returned in the compute dtype.
"""
import torch


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


def segsum(a, upper: float = -torch.inf):
    """Segment sums of ``a`` along its last axis, as a lower-triangular matrix.

    out[..., i, j] = a[..., j+1] + ... + a[..., i] for i >= j (0 on the
    diagonal) and ``upper`` (-inf) above it, so exp(out) is the causal decay
    mask. It is computed as differences of one cumulative sum; the masking
    happens *before* exp, so the (positive, possibly huge) upper triangle
    never overflows and its gradient is exactly zero. (``upper=0`` is for a
    caller that zeroes the upper triangle elsewhere: exp of -inf takes a
    slow path on CPUs, 5x the time of exp of finite values.)
    """
    T = a.shape[-1]
    cs = torch.cumsum(a, dim=-1)                          # (..., T)
    out = cs[..., :, None] - cs[..., None, :]             # (..., T, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=a.device).tril()
    return out.masked_fill_(~causal, upper)               # (..., T, T)


def _chunked(t, b, c, L, l, pad):
    """(b, l, m, d) -> (b, m, c, L, d): heads (or groups) first, time cut
    into c chunks of L, zero-padded by ``pad`` steps; one copy."""
    m, d = t.shape[2:]
    out = t.new_empty((b, m, c * L, d))
    out[:, :, :l] = t.transpose(1, 2)
    out[:, :, l:] = 0
    return out.view(b, m, c, L, d)


def _across_chunks(y, xdt, dA_cs, Bc, Cc, g, k, n, initial_states,
                   return_final_states):
    """Steps 2-4 of :func:`ssd_scan_chunked`: add to the intra-chunk
    outputs ``y`` (b, h, c, L, p), in place, the contribution of the state
    entering each chunk; return the final states (b, h, p, n) when asked
    (else None)."""
    b, h, c, L, p = xdt.shape
    # Chunk j's end state is needed for the chunks after it, and for the
    # final states; the state entering chunk 0 is zero unless given.
    last = c if return_final_states else c - 1
    first = 0 if initial_states is not None else 1
    final_states = None
    if last > 0 or first < c:
        # 2. State each chunk adds by its end (inputs decayed to the last step).
        cs = dA_cs[:, :, :last]                           # (b, h, last, L)
        xdt_end = (xdt[:, :, :last] * torch.exp(cs[..., -1:] - cs)[..., None]
                   ).view(b, g, k, last, L, p)
        chunk_states = (xdt_end.transpose(-1, -2)
                        @ Bc[:, :, None, :last]).view(b, h, last, p, n)

        # 3. Inter-chunk recurrence: a chunk's entering state, decayed over
        # the chunk, plus what the chunk adds (c - 1 steps of (b, h, p, n)).
        chunk_decay = torch.exp(dA_cs[..., -1])           # (b, h, c)
        S = (xdt.new_zeros((b, h, p, n)) if initial_states is None
             else initial_states.to(xdt.dtype))       # (b, h, p, n)
        entering = []
        for j in range(c):
            if j >= first:
                entering.append(S)
            if j < last:
                S = chunk_decay[:, :, j, None, None] * S + chunk_states[:, :, j]
        final_states = S if return_final_states else None

        # 4. Contribution of the state entering each chunk to its outputs.
        if entering:
            states_in = torch.stack(entering, 2).view(b, g, k, c - first,
                                                      p, n)
            y_off = (Cc[:, :, None, first:] @ states_in.transpose(-1, -2)
                     ).view(b, h, c - first, L, p)       # (b, h, c - first, L, p)
            # in place: the product's backward needs its inputs only
            y[:, :, first:] += y_off * torch.exp(dA_cs[:, :, first:])[..., None]
    return final_states


def ssd_scan_chunked(x, dt, A, B, C, chunk_size, D=None, initial_states=None,
                     return_final_states=False):
    """Chunked SSD scan; same semantics as :func:`ssd_scan_ref`.

    The length is zero-padded up to a multiple of ``chunk_size`` (dt = 0 on
    padding means decay 1 and no input, so final states are unaffected) and
    the padding is stripped from ``y``. Returns ``y`` (b, l, h, p), or
    ``(y, final_states)`` with final_states (b, h, p, n) when
    ``return_final_states``. Letters below: c chunks, L = chunk length
    (also s for the source position), k = heads per group (h = g * k).

    Layout: every tensor is moved once to heads-first, chunked time
    (b, h, c, L, .) so that each product below is a batched matrix product
    on contiguous memory (no hidden permute copies inside ``einsum``); with
    no initial state the first chunk's outputs need no inter-chunk term and
    the last chunk's end state is computed only for the final states; the
    recurrence over chunk boundaries is a loop of c elementwise steps (a
    (c+1)-square decay matrix product was slower for the few chunks of a
    barcode).
    """
    b, l, h, p, g, n = _check_shapes(x, dt, A, B, C, D)
    cd = _compute_dtype(x.dtype)
    k, L = h // g, int(chunk_size)
    if L < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    pad = (-l) % L
    c = (l + pad) // L

    dtf = dt.to(cd)
    xdt = _chunked(x.to(cd) * dtf[..., None], b, c, L, l, pad)  # (b, h, c, L, p)
    dA = _chunked((dtf * A.to(cd))[..., None], b, c, L, l, pad)[..., 0]  # (b, h, c, L)
    Bc = _chunked(B.to(cd), b, c, L, l, pad)              # (b, g, c, L, n)
    Cc = _chunked(C.to(cd), b, c, L, l, pad)              # (b, g, c, L, n)
    dA_cs = torch.cumsum(dA, dim=-1)                      # (b, h, c, L)

    # 1. Intra-chunk outputs: y_l = sum_{s<=l} (C_l.B_s) exp(sum_{s<i<=l} dA_i) dt_s x_s
    # the causal mask is applied to CB (k times smaller than the decays):
    # the decays' upper triangle is exp(0) = 1, finite, times a zero
    decay = segsum(dA, upper=0.0).exp_()                  # (b, h, c, L, L)
    future = torch.ones(L, L, dtype=torch.bool, device=x.device).triu(1)
    CB = (Cc @ Bc.transpose(-1, -2)).masked_fill_(future, 0.0)  # (b, g, c, L, L)
    M = decay.view(b, g, k, c, L, L) * CB[:, :, None]     # (b, g, k, c, L, L)
    y = M.view(b, h, c, L, L) @ xdt                       # (b, h, c, L, p)

    final_states = _across_chunks(y, xdt, dA_cs, Bc, Cc, g, k, n,
                                  initial_states, return_final_states)

    y = y.view(b, h, c * L, p)[:, :, :l].transpose(1, 2)  # (b, l, h, p)
    if D is not None:
        y = x.to(cd) * D.to(cd)[:, None] + y              # (b, l, h, p)
    y = y.to(x.dtype).contiguous()
    return (y, final_states) if return_final_states else y
