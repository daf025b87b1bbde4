import numpy as np
import pytest

from q2_barcodemamba.core.data import (KmerOrienter, clean_sequence,
                                       length_batches, orient, read_fasta,
                                       read_taxonomy,
                                       reverse_complement)
from q2_barcodemamba.core.split import grouped_split, haplotype_clusters
from q2_barcodemamba.core.taxonomy import parse_taxonomy
from q2_barcodemamba.core.tokenizer import DNATokenizer

from q2_barcodemamba.tests.helpers import data_path, yeasts


def test_clean_sequence_normalises_case_rna_gaps_and_iupac():
    assert clean_sequence("acgu-..ACGT", "r1") == "ACGTACGT"
    assert clean_sequence("ACRYKMSWBDHVN", "r1") == "AC" + "N" * 11


@pytest.mark.parametrize("seq,pos,char", [("ACGTXACGT", 5, "X"),
                                          ("ac*", 3, "*"),
                                          ("ACG T", 4, " ")])
def test_clean_sequence_names_record_position_and_character(seq, pos, char):
    with pytest.raises(ValueError, match=rf"'read-7'.*{char!r}.*position "
                                         rf"{pos}\b"):
        clean_sequence(seq, "read-7")


def test_reverse_complement():
    assert reverse_complement("AACGTN") == "NACGTT"


def test_read_fasta_gz_streams_real_records():
    recs = list(read_fasta(data_path("its_full_cbs_yeasts.fasta.gz")))
    assert len(recs) == 3692
    assert recs[0][0] == "KY106088" and len(recs[0][1]) == 632


def test_read_fasta_rejects_non_fasta(tmp_path):
    p = tmp_path / "x.fasta"
    p.write_text("ACGT\n>r1\nACGT\n")
    with pytest.raises(ValueError, match="line 1.*not a FASTA"):
        list(read_fasta(p))


def test_tokenizer_round_trip_and_json(tmp_path):
    _, seqs, _ = yeasts()
    clean = [clean_sequence(s, str(i)) for i, s in enumerate(seqs[:400])]
    tok = DNATokenizer.train(clean, vocab_size=300)
    assert tok.vocab_size == 300
    ids = tok.encode(clean[:50], max_length=10_000)
    assert [tok.decode(t) for t in ids] == clean[:50]
    # BPE compresses: well under one token per base
    assert np.mean([len(t) / len(s) for t, s in zip(ids, clean)]) < 0.4
    tok2 = DNATokenizer.from_json(tok.to_json())
    assert tok2.encode(clean[:50], 10_000) == ids
    assert all(len(t) <= 7 for t in tok.encode(clean[:50], max_length=7))


def test_tokenizer_rejects_garbage_json():
    with pytest.raises(ValueError, match="not a valid tokenizer"):
        DNATokenizer.from_json("{\"model\": 3}")


def test_length_batches_cover_all_indices_once():
    lengths = np.random.RandomState(0).randint(1, 100, size=203).tolist()
    for shuffle in (False, True):
        batches = length_batches(lengths, 16, shuffle=shuffle, seed=3)
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(203))
        assert max(len(b) for b in batches) <= 16
    assert length_batches(lengths, 16, True, 3) == \
        length_batches(lengths, 16, True, 3)


def test_kmer_orienter_detects_reverse_reads():
    _, seqs, _ = yeasts()
    clean = [clean_sequence(s, str(i)) for i, s in enumerate(seqs)]
    orienter = KmerOrienter.fit(clean[:3000])
    queries = clean[3000:3200]
    assert orienter.reverse_mask(queries).sum() == 0
    rc = [reverse_complement(s) for s in queries]
    assert orienter.reverse_mask(rc).all()
    mixed = [q if i % 2 else r for i, (q, r) in enumerate(zip(queries, rc))]
    assert orient(mixed, "auto", orienter) == queries
    with pytest.raises(ValueError, match="read_orientation"):
        orient(queries, "sideways", orienter)


def kmer_set(seq: str, k: int = 8) -> set:
    """Canonical k-mers: each k-mer or its reverse complement, whichever
    sorts first (the split's measure, written independently)."""
    words = (seq[i:i + k] for i in range(len(seq) - k + 1))
    return {min(w, reverse_complement(w)) for w in words if "N" not in w}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / max(len(a | b), 1)


def mutate(seq: str, n: int, rng) -> str:
    """``seq`` with ``n`` substitutions at distinct random positions."""
    s = list(seq)
    for pos in rng.choice(len(s), size=n, replace=False):
        s[pos] = "A" if s[pos] != "A" else "C"
    return "".join(s)


def test_grouped_split_has_no_shared_or_near_identical_sequences():
    ids, seqs, tax = yeasts()
    clean = [clean_sequence(s, i) for i, s in zip(ids, seqs)]
    lineages = parse_taxonomy(ids, [tax[i] for i in ids])
    # near-identical copies (one substitution per 250 bp: k-mer Jaccard
    # >= 0.93, above the 0.9 linkage threshold) of every 25th read, same
    # lineage
    rng = np.random.default_rng(0)
    origin = list(range(0, len(clean), 25))
    copies = [mutate(clean[i], max(1, len(clean[i]) // 250), rng)
              for i in origin]
    assert all(jaccard(kmer_set(c), kmer_set(clean[i])) >= 0.9
               for c, i in zip(copies, origin))
    all_seqs = clean + copies
    all_lin = lineages + [lineages[i] for i in origin]
    tr, va = grouped_split(all_seqs, all_lin, 0.1, seed=5)
    n = len(all_seqs)
    assert len(set(tr) & set(va)) == 0 and len(tr) + len(va) == n
    assert 0.08 < len(va) / n < 0.13
    # each copy is on the side of its original
    held = np.zeros(n, dtype=bool)
    held[va] = True
    assert (held[len(clean):] == held[origin]).all()
    assert held[origin].any() and not held[origin].all()
    # no held-out read has an identical (either strand) or near-identical
    # (k-mer Jaccard >= 0.9) read of its lineage in training. (Identical
    # reads under two lineages, e.g. s__Saccharomyces_cerevisiae and
    # s__Saccharomyces_sp, are different classes and may be split.)
    train_by_lineage = {}
    for i in tr:
        train_by_lineage.setdefault(all_lin[i], []).append(i)
    kmers, closest = {}, 0.0
    for i in va:
        same = train_by_lineage.get(all_lin[i], [])
        twins = {all_seqs[j] for j in same} | {
            reverse_complement(all_seqs[j]) for j in same}
        assert all_seqs[i] not in twins, i
        for j in same:
            for x in (i, j):
                if x not in kmers:
                    kmers[x] = kmer_set(all_seqs[x])
            closest = max(closest, jaccard(kmers[i], kmers[j]))
    assert closest < 0.9, closest
    # unseen lineages are held out whole, and their genus stays in training
    train_lin = {all_lin[i] for i in tr}
    unseen = {all_lin[i] for i in va if all_lin[i] not in train_lin}
    assert len(unseen) >= 10
    train_genera = {lin[:6] for lin in train_lin}
    assert all(lin[:6] in train_genera for lin in unseen)
    assert list(grouped_split(all_seqs, all_lin, 0.1, seed=5)[1]) == list(va)


def test_haplotype_clusters_link_near_identical_reads():
    _, seqs, _ = yeasts()
    base = seqs[0]  # 632 bp real full ITS
    mutated = base[:100] + ("A" if base[100] != "A" else "C") + base[101:]
    other = seqs[-1]
    c = haplotype_clusters([base, mutated, other], ["sp", "sp", "sp"])
    assert c[0] == c[1] != c[2]
    # the same whichever strand each read is written on (a read one base
    # shorter can choose the other strand as its canonical string)
    flipped = reverse_complement(mutated[:-1])
    c = haplotype_clusters([base, flipped, other], ["sp", "sp", "sp"])
    assert c[0] == c[1] != c[2]


def test_read_taxonomy_plain_and_gzipped(tmp_path):
    p = tmp_path / "t.tsv"
    p.write_text("Feature ID\tTaxon\tConfidence\nr1\tk__F;p__A\t0.9\n"
                 "r2\tk__F;p__B\t1\n")
    assert read_taxonomy(p) == {"r1": "k__F;p__A", "r2": "k__F;p__B"}
    tax = read_taxonomy(data_path("its_full_cbs_yeasts.taxonomy.tsv.gz"))
    assert len(tax) == 3692 and tax["KY106088"].endswith("Zygotorulaspora_mrakii")


def test_read_taxonomy_keeps_non_ascii_names(tmp_path):
    import gzip
    from q2_barcodemamba.core.data import read_taxonomy
    text = "Feature ID\tTaxon\nr1\tk__Fungi;g__Elsinoë;s__Elsinoë_ampelina\n"
    (tmp_path / "t.tsv").write_text(text, encoding="utf-8")
    with gzip.open(tmp_path / "t.tsv.gz", "wt", encoding="utf-8") as fh:
        fh.write(text)
    for name in ("t.tsv", "t.tsv.gz"):
        tax = read_taxonomy(str(tmp_path / name))
        assert tax == {"r1": "k__Fungi;g__Elsinoë;s__Elsinoë_ampelina"}


def test_batched_orientation_equals_per_read_kmer_counts():
    """The vectorised reverse_mask decides exactly as comparing the shared
    k-mer fractions of each read and of its reverse complement, including
    reads with N, reads shorter than k and empty reads, across chunk
    boundaries."""
    _, seqs, _ = yeasts()
    clean = [clean_sequence(s, str(i)) for i, s in enumerate(seqs)]
    orienter = KmerOrienter.fit(clean[:1500])
    rng = np.random.RandomState(1)
    queries = []
    for i, s in enumerate(clean[1500:1900]):
        s = list(s if i % 3 else reverse_complement(s))
        for pos in rng.randint(0, len(s), size=i % 7):   # sprinkle N
            s[pos] = "N"
        queries.append("".join(s[:rng.randint(3, len(s) + 1)]))
    queries += ["", "ACGT", "N" * 30, "ACGTACGTAC"]
    from q2_barcodemamba.core import data as data_mod

    def shared_fraction(seq):
        """Share of the read's k-mers in the reference, one read at a time
        from the bit set."""
        codes = data_mod._kmer_codes(seq, orienter.k)
        if codes.size == 0:
            return 0.0
        return float(((orienter.bits[codes >> 3] >> (7 - (codes & 7))) & 1)
                     .mean())
    expected = np.array([
        shared_fraction(reverse_complement(q)) > shared_fraction(q)
        for q in queries])
    assert expected.sum() > 100                  # both kinds present
    assert (orienter.reverse_mask(queries) == expected).all()
    chunks = list(data_mod._base_chunks(queries, max_bases=5000))
    assert len(chunks) > 10 and sum(chunks, []) == queries
    # the table built in batches equals the per-read k-mer codes
    present = np.zeros(4 ** 10, dtype=bool)
    for s in clean[:1500]:
        present[data_mod._kmer_codes(s, 10)] = True
    assert (np.packbits(present) == orienter.bits).all()


def test_seen_ids_finds_duplicates_across_chunks_in_bounded_memory():
    from q2_barcodemamba.core.data import SeenIds
    seen = SeenIds()
    ids = [f"read{i}" for i in range(100_000)]
    for start in range(0, len(ids), 8192):         # no false alarms
        seen.add(ids[start:start + 8192])
    assert len(seen) == 100_000
    assert seen._sorted.nbytes == 8 * 100_000     # 8 bytes per id
    assert (np.diff(seen._sorted) > 0).all()
    with pytest.raises(ValueError, match="'read77' occurs more than once"):
        seen.add(["new1", "read77"])               # seen in an old chunk
    with pytest.raises(ValueError, match="'dup' occurs more than once"):
        SeenIds().add(["dup", "x", "dup"])         # within one chunk


def test_token_batches_cap_padded_tokens_and_reads():
    from q2_barcodemamba.core.data import token_batches
    rng = np.random.RandomState(2)
    lengths = rng.randint(20, 300, size=1000).tolist() + [5000]
    batches = token_batches(lengths, max_tokens=4096, max_batch=50)
    assert sorted(i for b in batches for i in b) == list(range(1001))
    for b in batches:
        longest = max(lengths[i] for i in b)
        assert len(b) <= 50
        assert len(b) * longest <= 4096 or len(b) == 1
    assert [len(b) for b in batches if max(lengths[i] for i in b) == 5000] \
        == [1]                                     # too long: alone
    # short reads fill batches up to max_batch, long ones get fewer
    assert len(batches[0]) == 50 and len(batches[-2]) < 20
