"""Evaluation splits that imitate real use, written to disk and checked.

Query reads come in three categories, each with a different right answer:

* ``seen``: a held-out haplotype cluster of a species that keeps other
  clusters in the reference (right answer: the species);
* ``unseen_species``: every read of a species removed from the reference,
  its genus keeping other species (right answer: the genus, no species);
* ``unseen_genus``: every read of a genus removed, its family keeping other
  genera (right answer: the family, no genus).

Two disjoint query sets are made: ``test`` (reported) and ``val`` (used only
to choose a confidence threshold). A taxon feeds at most one of them.
Haplotype clusters come from :func:`q2_barcodemamba.core.split.
haplotype_clusters` (single linkage at 8-mer Jaccard >= 0.9, about 99 %
identity on full ITS), so a seen-species query is a genuinely new haplotype.
Queries are drawn only from reads with all seven ranks known and a named
species (not ``*_sp``). Any query whose sequence, or its reverse complement,
also occurs in the reference (e.g. one sequence filed under two species) is
dropped and counted; :func:`check_split` then verifies the files on disk.
"""
import hashlib
import json
import os
import random
from collections import defaultdict
from typing import Dict, List

import numpy as np

from q2_barcodemamba.core.data import (  # noqa: F401 (read_taxonomy re-exported)
    clean_sequence, read_fasta, read_taxonomy, reverse_complement)
from q2_barcodemamba.core.split import haplotype_clusters
from q2_barcodemamba.core.taxonomy import is_unknown, parse_taxonomy

# the project's shared references (not in a user's clone)
SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                      "shared", "data", "its")
SPLIT_VERSION = 2  # bump when make_split changes
CATEGORIES = ("seen", "unseen_species", "unseen_genus")
PARTS = ("test", "val")
SPLIT_FILES = ("reference.fasta", "reference-taxonomy.tsv", "test.fasta",
               "test-truth.tsv", "val.fasta", "val-truth.tsv", "split.json")


def load_set(name: str, data: str = SHARED):
    """(ids, reads, {id: lineage}) of the shared reference ``name``
    (``<data>/<name>.{fasta,taxonomy.tsv}.gz``); when it is missing (a
    user's clone) say so and exit with status 2."""
    import sys
    fasta = os.path.join(data, f"{name}.fasta.gz")
    if not os.path.exists(fasta):
        print(f"{fasta} not found: this benchmark needs the project's shared "
              "data next to the repository.", file=sys.stderr)
        sys.exit(2)
    recs = list(read_fasta(fasta))
    tax = read_taxonomy(os.path.join(data, f"{name}.taxonomy.tsv.gz"))
    return [r[0] for r in recs], [r[1] for r in recs], tax


def load_dataset(fasta: str, taxonomy: str):
    """(ids, cleaned seqs, raw taxon strings, truncated lineages)."""
    ids, seqs = [], []
    for rid, raw in read_fasta(fasta):
        ids.append(rid)
        seqs.append(clean_sequence(raw, rid))
    tax = read_taxonomy(taxonomy)
    missing = [i for i in ids if i not in tax]
    if missing:
        raise ValueError(f"{taxonomy} lacks a lineage for {len(missing)} "
                         f"reads of {fasta}, e.g. {missing[:3]}.")
    taxa = [tax[i] for i in ids]
    return ids, seqs, taxa, parse_taxonomy(ids, taxa)


def _queryable(lin) -> bool:
    """All 7 ranks known and a named species (not a '*_sp' placeholder)."""
    return len(lin) == 7 and not lin[6].lower().endswith("_sp")


def _groups(lineages, depth: int) -> Dict[str, List[int]]:
    out = defaultdict(list)
    for i, lin in enumerate(lineages):
        if len(lin) >= depth:
            out[";".join(lin[:depth])].append(i)
    return out


class _Picker:
    """Fill test then val up to their target query counts, per category."""

    def __init__(self, sizes: dict, category: str):
        self.left = {p: sizes[p][category] for p in PARTS}

    def part(self):
        for p in PARTS:
            if self.left[p] > 0:
                return p
        return None


def make_split(ids, seqs, lineages, sizes: dict, seed: int,
               per_taxon: dict, max_taxon_reads: int = 30) -> dict:
    """Choose reference and query records.

    ``sizes[part][category]``: target query reads; ``per_taxon[category]``:
    most queries taken from one taxon (the rest of its reads are still
    removed from the reference). Taxa with more than ``max_taxon_reads``
    reads are never removed whole (they stay reference backbone).
    Returns {"held": bool array (not in reference), "queries":
    {index: (part, category)}, "dropped_identical": int}.
    """
    rng = random.Random(seed)
    n = len(ids)
    held = np.zeros(n, dtype=bool)
    queries: Dict[int, tuple] = {}

    def take(idx, part, category, cap):
        held[idx] = True
        eligible = [i for i in idx if _queryable(lineages[i])]
        chosen = sorted(rng.sample(eligible, min(cap, len(eligible))))
        for i in chosen:
            queries[i] = (part, category)
        return len(chosen)

    def remaining_children(parent_groups, parent, child, depth):
        return [c for c in parent_groups[parent] if c != child
                and not held[child_reads[depth][c]].all()]

    child_reads = {6: _groups(lineages, 6), 7: _groups(lineages, 7)}
    # 1. unseen genera: family must keep another genus
    fam_genera = defaultdict(list)
    for g in child_reads[6]:
        fam_genera[g.rsplit(";", 1)[0]].append(g)
    order = sorted(child_reads[6])
    rng.shuffle(order)
    pick = _Picker(sizes, "unseen_genus")
    for g in order:
        part = pick.part()
        if part is None:
            break
        fam = g.rsplit(";", 1)[0]
        idx = child_reads[6][g]
        if ("incertae_sedis" in fam.lower() or len(idx) > max_taxon_reads
                or is_unknown(fam.rsplit(";", 1)[-1])
                or not remaining_children(fam_genera, fam, g, 6)
                or not any(_queryable(lineages[i]) for i in idx)):
            continue
        pick.left[part] -= take(idx, part, "unseen_genus",
                                per_taxon["unseen_genus"])
    # 2. unseen species: genus must keep another (not held) leaf
    gen_species = defaultdict(list)
    for s in child_reads[7]:
        gen_species[s.rsplit(";", 1)[0]].append(s)
    order = sorted(child_reads[7])
    rng.shuffle(order)
    pick = _Picker(sizes, "unseen_species")
    for s in order:
        part = pick.part()
        if part is None:
            break
        gen = s.rsplit(";", 1)[0]
        idx = child_reads[7][s]
        if (held[idx].any() or len(idx) > max_taxon_reads
                or not _queryable(lineages[idx[0]])
                or not remaining_children(gen_species, gen, s, 7)):
            continue
        pick.left[part] -= take(idx, part, "unseen_species",
                                per_taxon["unseen_species"])
    # 3. seen: one haplotype cluster (not the largest) of a species with
    # >= 2 clusters, so the species keeps its main haplotype
    keep = np.flatnonzero(~held)
    leaves = [";".join(lineages[i]) for i in keep]
    cluster = haplotype_clusters([seqs[i] for i in keep], leaves)
    species_clusters = defaultdict(lambda: defaultdict(list))
    for i, c in zip(keep, cluster):
        if _queryable(lineages[i]):
            species_clusters[";".join(lineages[i])][int(c)].append(int(i))
    order = sorted(s for s, cs in species_clusters.items() if len(cs) > 1)
    rng.shuffle(order)
    pick = _Picker(sizes, "seen")
    for s in order:
        part = pick.part()
        if part is None:
            break
        cs = species_clusters[s]
        largest = max(sorted(cs), key=lambda c: len(cs[c]))
        c = rng.choice([c for c in sorted(cs) if c != largest])
        pick.left[part] -= take(cs[c], part, "seen", per_taxon["seen"])
    # 4. no query may equal a reference read (either strand)
    ref_set = set()
    for i in np.flatnonzero(~held):
        ref_set.add(seqs[i])
        ref_set.add(reverse_complement(seqs[i]))
    dropped = [i for i in queries if seqs[i] in ref_set]
    for i in dropped:
        del queries[i]
    return {"held": held, "queries": queries,
            "dropped_identical": len(dropped)}


def _write_fasta(path, ids, seqs, idx):
    with open(path, "w") as fh:
        fh.writelines(f">{ids[i]}\n{seqs[i]}\n" for i in idx)


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def write_split(out_dir: str, dataset: str, fasta: str, taxonomy: str,
                sizes: dict, per_taxon: dict, seed: int) -> dict:
    """Build the split of ``dataset`` into ``out_dir`` (or reuse the one
    there when it was made with the same inputs and settings). Returns the
    split summary (split.json)."""
    settings = {"split_version": SPLIT_VERSION, "dataset": dataset,
                "seed": seed, "sizes": sizes,
                "per_taxon": per_taxon, "fasta_sha256": file_digest(fasta),
                "taxonomy_sha256": file_digest(taxonomy)}
    meta_path = os.path.join(out_dir, "split.json")
    if all(os.path.exists(os.path.join(out_dir, f)) for f in SPLIT_FILES):
        with open(meta_path) as fh:
            meta = json.load(fh)
        if meta["settings"] != settings:
            raise SystemExit(
                f"{out_dir} holds a split made with other settings "
                f"({meta['settings']}); use another --out or delete it.")
        check_split(out_dir)
        return meta
    os.makedirs(out_dir, exist_ok=True)
    ids, seqs, taxa, lineages = load_dataset(fasta, taxonomy)
    res = make_split(ids, seqs, lineages, sizes, seed, per_taxon)
    ref = np.flatnonzero(~res["held"])
    _write_fasta(os.path.join(out_dir, "reference.fasta"), ids, seqs, ref)
    with open(os.path.join(out_dir, "reference-taxonomy.tsv"), "w",
              encoding="utf-8") as fh:
        fh.write("Feature ID\tTaxon\n")
        fh.writelines(f"{ids[i]}\t{taxa[i]}\n" for i in ref)
    counts = {p: {c: 0 for c in CATEGORIES} for p in PARTS}
    for part in PARTS:
        idx = sorted(i for i, (p, _) in res["queries"].items() if p == part)
        _write_fasta(os.path.join(out_dir, f"{part}.fasta"), ids, seqs, idx)
        with open(os.path.join(out_dir, f"{part}-truth.tsv"), "w",
                  encoding="utf-8") as fh:
            fh.write("Feature ID\tTaxon\tcategory\n")
            for i in idx:
                cat = res["queries"][i][1]
                counts[part][cat] += 1
                fh.write(f"{ids[i]}\t{taxa[i]}\t{cat}\n")
    meta = {"settings": settings, "n_records": len(ids),
            "n_reference": int(len(ref)),
            "n_removed_not_queried": int(res["held"].sum())
            - sum(sum(c.values()) for c in counts.values()),
            "queries": counts,
            "dropped_identical_to_reference": res["dropped_identical"]}
    meta["check"] = check_split(out_dir)
    with open(meta_path, "w") as fh:
        json.dump(meta, fh, indent=1)
    return meta


def read_truth(path: str) -> Dict[str, tuple]:
    """{id: (taxon string, category)} from a *-truth.tsv file."""
    out = {}
    with open(path, encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            rid, taxon, cat = line.rstrip("\n").split("\t")
            out[rid] = (taxon, cat)
    return out


def check_split(out_dir: str) -> dict:
    """Verify the split files: ids unique and disjoint, every query in its
    truth table, no query sequence (or its reverse complement) in the
    reference, and each category's right answer absent/present in the
    reference as it should be. Raises AssertionError naming the record."""
    ref = dict(read_fasta(os.path.join(out_dir, "reference.fasta")))
    ref_tax = read_taxonomy(os.path.join(out_dir, "reference-taxonomy.tsv"))
    assert set(ref) == set(ref_tax), "reference FASTA and taxonomy differ"
    ref_seqs = set(ref.values())
    ref_seqs |= {reverse_complement(s) for s in ref_seqs}
    prefixes = set()
    for lin in parse_taxonomy(list(ref_tax), list(ref_tax.values())):
        prefixes.update(";".join(lin[:r + 1]) for r in range(len(lin)))
    seen_ids, n = set(ref), {}
    for part in PARTS:
        q = dict(read_fasta(os.path.join(out_dir, f"{part}.fasta")))
        truth = read_truth(os.path.join(out_dir, f"{part}-truth.tsv"))
        assert set(q) == set(truth), f"{part}: FASTA and truth ids differ"
        for rid, s in q.items():
            assert rid not in seen_ids, f"{rid} occurs twice in the split"
            seen_ids.add(rid)
            assert s not in ref_seqs, (
                f"{part} query {rid} equals a reference read (or its "
                "reverse complement)")
            lin = truth[rid][0].split(";")
            depth = {"seen": 7, "unseen_species": 6,
                     "unseen_genus": 5}[truth[rid][1]]
            assert ";".join(lin[:depth]) in prefixes, (
                f"{rid}: its {truth[rid][1]} answer is not in the reference")
            assert ";".join(lin[:depth + 1]) not in prefixes or depth == 7, (
                f"{rid}: {truth[rid][1]} but its taxon is in the reference")
        n[part] = len(q)
    return {"ok": True, "reference": len(ref), **n}
