"""The chunked SSD scan agrees with the sequential recurrence."""
import pytest
import torch
from torch.testing import assert_close

from q2_barcodemamba.core.ssd import segsum, ssd_scan_chunked, ssd_scan_ref


def make_inputs(b, l, h, p, g, n, dtype=torch.float32, seed=0,
                requires_grad=False):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, l, h, p, generator=gen, dtype=dtype)
    # dt in the range produced by softplus(dt_raw + dt_bias) in practice.
    dt = torch.nn.functional.softplus(
        torch.randn(b, l, h, generator=gen, dtype=dtype) - 2.0)
    A = -torch.empty(h, dtype=dtype).uniform_(1.0, 16.0, generator=gen)
    B = torch.randn(b, l, g, n, generator=gen, dtype=dtype)
    C = torch.randn(b, l, g, n, generator=gen, dtype=dtype)
    D = torch.randn(h, generator=gen, dtype=dtype)
    out = [x, dt, A, B, C, D]
    if requires_grad:
        for t in out:
            t.requires_grad_(True)
    return out


SHAPES = [  # (b, l, h, p, g, n, chunk)
    (2, 1, 4, 8, 1, 16, 16),
    (2, 37, 4, 8, 1, 16, 16),
    (2, 37, 4, 8, 2, 16, 64),
    (1, 130, 4, 8, 2, 8, 16),
    (3, 130, 6, 4, 3, 8, 64),
    (2, 64, 4, 8, 1, 16, 64),   # exactly one chunk
    (2, 48, 2, 8, 1, 4, 16),    # exactly three chunks
    (1, 20, 2, 4, 1, 4, 1),     # chunk of one step
]


@pytest.mark.parametrize("use_D", [False, True])
@pytest.mark.parametrize("b,l,h,p,g,n,chunk", SHAPES)
def test_chunked_matches_reference(b, l, h, p, g, n, chunk, use_D):
    torch.manual_seed(0)
    x, dt, A, B, C, D = make_inputs(b, l, h, p, g, n)
    D = D if use_D else None
    y_ref = ssd_scan_ref(x, dt, A, B, C, D=D)
    y = ssd_scan_chunked(x, dt, A, B, C, chunk, D=D)
    assert y.shape == (b, l, h, p)
    assert y.dtype == x.dtype
    assert_close(y, y_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("chunk", [1, 7, 16, 64, 200])
def test_chunk_size_does_not_change_result(chunk):
    x, dt, A, B, C, D = make_inputs(2, 45, 4, 8, 2, 8, seed=1)
    y_ref = ssd_scan_ref(x, dt, A, B, C, D=D)
    assert_close(ssd_scan_chunked(x, dt, A, B, C, chunk, D=D), y_ref,
                 rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("l,split,chunk", [(37, 20, 16), (130, 64, 64),
                                           (130, 51, 16), (2, 1, 16)])
def test_states_split_sequence_in_two(l, split, chunk):
    x, dt, A, B, C, D = make_inputs(2, l, 4, 8, 2, 16, seed=2)
    y_full, s_full = ssd_scan_chunked(x, dt, A, B, C, chunk, D=D,
                                      return_final_states=True)
    first = [t[:, :split] for t in (x, dt)] + [A] + [t[:, :split] for t in (B, C)]
    second = [t[:, split:] for t in (x, dt)] + [A] + [t[:, split:] for t in (B, C)]
    y1, s1 = ssd_scan_chunked(*first, chunk, D=D, return_final_states=True)
    y2, s2 = ssd_scan_chunked(*second, chunk, D=D, initial_states=s1,
                              return_final_states=True)
    assert s1.shape == (2, 4, 8, 16)
    assert_close(torch.cat([y1, y2], dim=1), y_full, rtol=1e-4, atol=1e-4)
    assert_close(s2, s_full, rtol=1e-4, atol=1e-4)
    # ... and the final state is the one of the sequential recurrence.
    _, s_ref = ssd_scan_ref(x, dt, A, B, C, D=D, return_final_states=True)
    assert_close(s_full, s_ref, rtol=1e-4, atol=1e-4)


def test_initial_states_match_reference():
    x, dt, A, B, C, D = make_inputs(2, 37, 4, 8, 1, 16, seed=3)
    s0 = torch.randn(2, 4, 8, 16)
    y_ref, s_ref = ssd_scan_ref(x, dt, A, B, C, D=D, initial_states=s0,
                                return_final_states=True)
    y, s = ssd_scan_chunked(x, dt, A, B, C, 16, D=D, initial_states=s0,
                            return_final_states=True)
    assert_close(y, y_ref, rtol=1e-4, atol=1e-4)
    assert_close(s, s_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("l,g,chunk", [(37, 1, 16), (70, 2, 32)])
def test_gradients_match_reference(l, g, chunk):
    """fp32 gradients agree to rtol=atol=1e-3 (sums over up to l*n terms)."""
    ins_ref = make_inputs(2, l, 4, 8, g, 8, seed=4, requires_grad=True)
    ins_chk = [t.detach().clone().requires_grad_(True) for t in ins_ref]
    w = torch.randn(2, l, 4, 8, generator=torch.Generator().manual_seed(5))
    x, dt, A, B, C, D = ins_ref
    (ssd_scan_ref(x, dt, A, B, C, D=D) * w).sum().backward()
    x, dt, A, B, C, D = ins_chk
    (ssd_scan_chunked(x, dt, A, B, C, chunk, D=D) * w).sum().backward()
    for name, a, b in zip("x dt A B C D".split(), ins_chk, ins_ref):
        assert torch.isfinite(a.grad).all(), name
        assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-3, msg=name)


def test_gradcheck_float64():
    """Exact (finite-difference) gradient check of the chunked scan in fp64."""
    ins = make_inputs(1, 11, 2, 3, 1, 4, dtype=torch.float64, seed=6,
                      requires_grad=True)
    s0 = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)

    def f(x, dt, A, B, C, D, s0):
        return ssd_scan_chunked(x, dt, A, B, C, 4, D=D, initial_states=s0,
                                return_final_states=True)

    assert torch.autograd.gradcheck(f, (*ins, s0))


def test_float64_tight_and_half_precision_cast_back():
    x, dt, A, B, C, D = make_inputs(2, 37, 4, 8, 2, 8, dtype=torch.float64)
    assert_close(ssd_scan_chunked(x, dt, A, B, C, 16, D=D),
                 ssd_scan_ref(x, dt, A, B, C, D=D), rtol=1e-10, atol=1e-10)
    xb = x.to(torch.bfloat16)
    y = ssd_scan_chunked(xb, dt.float(), A.float(), B.float(), C.float(), 16,
                         D=D.float())
    assert y.dtype == torch.bfloat16
    y_ref = ssd_scan_ref(xb, dt.float(), A.float(), B.float(), C.float(),
                         D=D.float())
    assert_close(y.float(), y_ref.float(), rtol=2e-2, atol=2e-2)


def test_segsum_is_masked_and_overflow_free():
    a = torch.tensor([-1.0, -2.0, -3.0])
    s = segsum(a)
    expected = torch.tensor([[0.0, -torch.inf, -torch.inf],
                             [-2.0, 0.0, -torch.inf],
                             [-5.0, -3.0, 0.0]])
    assert_close(s, expected)
    # Large decays: exp of the upper triangle would overflow if not masked.
    big = torch.full((50,), -100.0, requires_grad=True)
    torch.exp(segsum(big)).sum().backward()
    assert torch.isfinite(big.grad).all()


def test_bad_shapes_raise():
    x, dt, A, B, C, D = make_inputs(1, 5, 3, 2, 1, 4)
    with pytest.raises(ValueError):
        ssd_scan_chunked(x, dt, A, B.expand(1, 5, 2, 4), C.expand(1, 5, 2, 4), 4)
    with pytest.raises(ValueError):
        ssd_scan_chunked(x, dt[..., :2], A, B, C, 4)
