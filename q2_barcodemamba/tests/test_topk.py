"""The blocked top-m selection (core/topk.py) that the lineage walk and the
embedding search use, and the search's order of equal similarities."""
import numpy as np
import pytest
import torch

import q2_barcodemamba.core.memory as memory
from q2_barcodemamba.core.memory import ReferenceMemory
from q2_barcodemamba.core.topk import BLOCK, MIN_RATIO, topk


def check(x, m, **kw):
    v, i = topk(x, m, **kw)
    ref = x.topk(m, dim=1).values
    assert v.shape == i.shape == (x.shape[0], m)
    assert torch.equal(v.sort(1, descending=True).values, ref)
    assert torch.equal(x.gather(1, i), v)               # indices match values
    assert all(len(set(r.tolist())) == m for r in i)    # no index twice
    return v, i


@pytest.mark.parametrize("n", [MIN_RATIO * 16 * BLOCK,          # 4096
                               MIN_RATIO * 16 * BLOCK + 17,     # short tail
                               41_712])
def test_same_values_as_torch_topk(n):
    g = torch.Generator().manual_seed(n)
    x = torch.softmax(torch.randn(7, n, generator=g) * 3, 1)
    v, _ = check(x, 16)
    assert (v[:, :-1] >= v[:, 1:]).all()                # sorted by default
    check(x, 16, sorted=False)
    check(x, 3)


def test_ties_and_integer_counts():
    """Counts of shared k-mers: most entries tie; the m-th value ties with
    entries outside the chosen blocks."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 3, (5, 20_000)))
    x[:, 5_000:5_010] = 9
    v, i = check(x, 64)
    assert (v[:, :10] == 9).all() and (v[:, 10:] == 2).all()
    x = torch.zeros((2, 20_001), dtype=torch.int64)     # all equal, tail
    check(x, 40)


def test_negative_values_and_the_short_last_block():
    """Padding past the row's end must never be chosen, even when every
    real entry is very negative."""
    x = torch.full((3, 8_200), -1e30)
    x[:, -1] = -1e29                                    # in the short block
    v, i = check(x, 8)
    assert (i[:, 0] == 8_199).all()


def test_small_rows_and_errors():
    x = torch.randn(4, 100)
    v, i = topk(x, 5)
    ref_v, ref_i = x.topk(5, dim=1)
    assert torch.equal(v, ref_v) and torch.equal(i, ref_i)
    assert topk(x, 0)[0].shape == (4, 0)
    with pytest.raises(ValueError, match="2-D"):
        topk(torch.randn(10), 2)
    with pytest.raises(ValueError, match="m must be in"):
        topk(x, 101)


def test_search_orders_equal_similarities_by_reference_index():
    """Identical reference reads have identical embeddings: the search
    returns them most similar first and, among equal similarities, by
    index, however many blocks the search is cut into. (Copies in
    different blocks may differ in the last bit of their product.)"""
    rng = np.random.default_rng(1)
    base = torch.as_tensor(rng.normal(size=(50, 8)), dtype=torch.float32)
    ref = base[torch.as_tensor(rng.integers(0, 50, 20_000))]
    mem = ReferenceMemory.build(ref, np.zeros(20_000, np.int64),
                                ["ACGT" * 10] * 20_000)
    q = base[:6] + 0.01 * torch.as_tensor(rng.normal(size=(6, 8)),
                                          dtype=torch.float32)
    results = []
    for block in (memory.SEARCH_BLOCK, 3_000):
        old, memory.SEARCH_BLOCK = memory.SEARCH_BLOCK, block
        try:
            results.append(mem.search(q, 32))
        finally:
            memory.SEARCH_BLOCK = old
    for idx, sim in results:
        for r in range(6):
            s, i = sim[r].tolist(), idx[r].tolist()
            assert s == sorted(s, reverse=True)
            assert all(i[j] < i[j + 1] for j in range(31) if s[j] == s[j + 1])
    np.testing.assert_allclose(results[0][1], results[1][1], atol=1e-6)
    # the query's own vector (repeated ~400 times) fills the top 32
    assert (results[0][1][:, 0] > 0.99).all()


def test_kmer_candidates_on_a_large_reference():
    """Over 65,536 reference reads the k-mer search takes the blocked
    selection: its candidates share as many searched k-mers with the
    query as the best m reads do (counted here by brute force)."""
    from q2_barcodemamba.core.kmers import INDEX_K, KmerIndex, KmerSets
    rng = np.random.default_rng(3)
    n = 70_000
    reads = ["".join(rng.choice(list("ACGT"), 24)) for _ in range(n)]
    queries = [reads[i][:20] + "".join(rng.choice(list("ACGT"), 10))
               for i in rng.integers(0, n, 3)]
    ref = KmerSets(reads, INDEX_K)
    index = KmerIndex(ref, max_df=1.0, max_posting=n)
    q = KmerSets(queries, INDEX_K)
    cand = index.candidates(q, 16)
    for i in range(len(queries)):
        table = np.zeros(4 ** INDEX_K, dtype=np.int64)
        table[q.codes[q.indptr[i]:q.indptr[i + 1]]] = 1
        shared = np.add.reduceat(table[ref.codes], ref.indptr[:-1])
        best = np.sort(shared)[::-1][:16]
        assert best[0] > 0
        assert sorted(shared[cand[i]], reverse=True) == best.tolist()
        assert len(set(cand[i].tolist())) == 16
