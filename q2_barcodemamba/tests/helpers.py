"""Shared test data (real bundled ITS reads) and a cached tiny classifier."""
import functools
import json
import os

from q2_barcodemamba.core.classifier import TaxonomicClassifier
from q2_barcodemamba.core.config import TrainConfig
from q2_barcodemamba.core.data import read_fasta, read_taxonomy

PKG_DATA = os.path.join(os.path.dirname(__file__), "..", "data")


def data_path(name: str) -> str:
    return os.path.join(PKG_DATA, name)


@functools.lru_cache(maxsize=None)
def yeasts():
    """(ids, raw seqs, taxonomy dict) of the bundled full-ITS yeast set."""
    recs = list(read_fasta(data_path("its_full_cbs_yeasts.fasta.gz")))
    tax = read_taxonomy(data_path("its_full_cbs_yeasts.taxonomy.tsv.gz"))
    return [r[0] for r in recs], [r[1] for r in recs], tax


@functools.lru_cache(maxsize=None)
def small_reference(n_genera: int = 6):
    """Reads of the ``n_genera`` largest genera (a few hundred reads)."""
    ids, seqs, tax = yeasts()
    genus = {i: tax[i].split(";")[5] for i in ids}
    counts = {}
    for g in genus.values():
        counts[g] = counts.get(g, 0) + 1
    keep_g = set(sorted(counts, key=lambda g: (-counts[g], g))[:n_genera])
    keep = [k for k, i in enumerate(ids) if genus[i] in keep_g]
    return ([ids[k] for k in keep], [seqs[k] for k in keep],
            {ids[k]: tax[ids[k]] for k in keep})


@functools.lru_cache(maxsize=None)
def tiny_classifier(epochs: int = 2, refit: bool = False
                    ) -> TaxonomicClassifier:
    """A quickly trained tiny classifier on ``small_reference`` (cached)."""
    ids, seqs, tax = small_reference()
    tc = TrainConfig(epochs=epochs, batch_size=32, vocab_size=256,
                     random_seed=1, n_threads=2, refit=refit)
    return TaxonomicClassifier("tiny", train_config=tc).fit(
        ids, seqs, tax, progress=lambda m: None)


def write_reference(dirpath, ids, seqs, tax):
    fasta = os.path.join(dirpath, "reads.fasta")
    with open(fasta, "w") as fh:
        for i, s in zip(ids, seqs):
            fh.write(f">{i}\n{s}\n")
    taxonomy = os.path.join(dirpath, "taxonomy.tsv")
    with open(taxonomy, "w") as fh:
        fh.write("Feature ID\tTaxon\n")
        for i in ids:
            fh.write(f"{i}\t{tax[i]}\n")
    return fasta, taxonomy


def assert_safetensors(data: bytes, name: str) -> None:
    """``data`` is a safetensors file: an 8-byte little-endian header
    length, a JSON header of plain tensors (no pickled objects), then
    exactly the bytes the header describes. (Its first byte is the
    header length's lowest byte and may be anything, 0x80 included.)"""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    end = 0
    for key, t in header.items():
        if key == "__metadata__":
            assert all(isinstance(v, str) for v in t.values()), name
            continue
        assert t["dtype"] in {"F64", "F32", "F16", "BF16", "I64", "I32",
                              "I16", "I8", "U8", "BOOL"}, (name, key)
        end = max(end, t["data_offsets"][1])
    assert len(data) == 8 + n + end, name
