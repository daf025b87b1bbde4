"""Would a genus shortlist keep the calls of a UNITE-size classifier?

Issue 16 asks for a classify cost that does not grow with the number of
reference lineages. Today every read pays the leaf head, the softmax, the
mixture and the walk over all lineages (41,000 at UNITE ITS1/ITS2 size,
``docs/benchmarks.md``). A factorised alternative keeps only the lineages
below each read's ``G`` most probable genera, as ranked by the genus head
that every default classifier trains beside the leaf head (per-rank heads,
BarcodeMamba+): a two-level, class-based softmax (Goodman 2001; Morin &
Bengio 2005) with the class level cut to a shortlist. Its cost per read is
the genus head plus ``G`` genera's lineages, not every lineage.

This probe measures the accuracy side only, on a classifier that
``benchmarks.unite_scale`` fitted on the standard split (kept, git-ignored,
at ``benchmarks/results/unite_scale/<set>/classifier``): the leaf logits
outside a read's shortlist are set to -inf, so the renormalised softmax,
the neighbours' votes (which still reach lineages outside the shortlist),
the walk and the calibrator run unchanged. It does not measure speed
(all logits are still computed). Scores of the held-out ``test`` and
``val`` queries of the split, the share of reads whose per-rank calls are
unchanged, lineages kept per read and the genus head's probability outside
the shortlist (what the cut drops at the genus level):

    .venv/bin/python -m benchmarks.shortlist_probe [--set its1_unite_insd]
        [--genera 16 32 64]

Writes ``docs/results/shortlist_probe_<set>.json`` and its table in the
scale section of docs/benchmarks.md (:func:`table`, through
``benchmarks.unite_scale``).
"""
import argparse
import contextlib
import functools
import json
import os
import time

import numpy as np
import torch

from q2_barcodemamba.core import predict
from q2_barcodemamba.core.inference import CHUNK, HeadLogits
from q2_barcodemamba.core.io import load_classifier

from . import accuracy

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(os.path.dirname(HERE), "docs", "results")


class ShortlistLogits(HeadLogits):
    """:class:`HeadLogits` with each read's logits outside the lineages of
    its ``n_genera`` most probable genera (``genus_head``; ``leaf_genus``:
    the genus of every lineage) set to -inf; counts go to ``stats``."""

    def __init__(self, z, head, bf16=False, *, genus_head, leaf_genus,
                 n_genera, stats):
        super().__init__(z, head, bf16)
        self.genus_head, self.leaf_genus = genus_head, leaf_genus
        self.n_genera, self.stats = n_genera, stats

    @torch.no_grad()
    def chunks(self, size: int = CHUNK):
        for sl, lg in super().chunks(size):
            g = torch.softmax(self.genus_head(self.z[sl].float()), dim=1)
            top = g.topk(self.n_genera, dim=1)
            keep = torch.zeros_like(g, dtype=torch.bool)
            keep.scatter_(1, top.indices, True)
            keep = keep[:, self.leaf_genus]
            self.stats["rows"] += len(lg)
            self.stats["kept"] += int(keep.sum())
            self.stats["dropped_genus_mass"] += float(
                (1 - top.values.sum(1)).sum())
            yield sl, lg.masked_fill(~keep, float("-inf"))


@contextlib.contextmanager
def shortlisted(clf, n_genera: int):
    """``clf.predict_ranks`` with the genus shortlist of ``n_genera`` (0:
    every lineage); yields the shortlist's counts."""
    stats = {"rows": 0, "kept": 0, "dropped_genus_mass": 0.0}
    if not n_genera:
        yield stats
        return
    rank = clf.labels.rank_names.index("genus")
    if len(clf.net.heads) != len(clf.labels.rank_names) + 1:
        raise SystemExit("the classifier has no per-rank heads")
    predict.HeadLogits = functools.partial(
        ShortlistLogits, genus_head=clf.net.heads[rank],
        leaf_genus=torch.as_tensor(
            np.asarray(clf.labels.leaf_to_class)[rank]).clamp(min=0),
        n_genera=n_genera, stats=stats)
    try:
        yield stats
    finally:
        predict.HeadLogits = HeadLogits


def table(probes: dict) -> list:
    """Markdown of the probes ``{set: result}`` (none: no lines)."""
    L = []
    for name, r in sorted(probes.items()):
        L += [f"### Genus shortlist before the leaf softmax: {name}", "",
              "`python -m benchmarks.shortlist_probe --set "
              f"{name}`: the held-out queries of the split classified with "
              "the lineages outside each read's top-G genera (genus head) "
              "removed from the leaf softmax; everything else as classify "
              f"({r['n_lineages']:,} lineages in {r['n_genera']:,} genera). "
              "Accuracy only: the probe still computes every logit.", "",
              "| queries | genera kept | lineages per read | right call | "
              "unseen sp.: genus | unseen gen.: family | calls unchanged | "
              "genus-head mass outside |", "|---|---|---|---|---|---|---|---|"]
        L += [f"| {x['part']} ({x['n_queries']}) | {x['genera']} | "
              f"{x['lineages_per_read']:,.0f} | {x['right_call']:.1f} | "
              f"{x['unseen_species_genus']:.1f} | "
              f"{x['unseen_genus_family']:.1f} | "
              f"{100 * x['same_calls']:.1f} % | "
              f"{x['genus_mass_dropped']:.2f} |" for x in r["rows"]]
        L.append("")
        if r.get("notes"):
            L += [r["notes"], ""]
    return L


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--set", default="its1_unite_insd")
    ap.add_argument("--genera", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds_dir = os.path.join(HERE, "results", "unite_scale", args.set)
    if not os.path.isdir(os.path.join(ds_dir, "classifier")):
        raise SystemExit(f"no classifier in {ds_dir}: run python -m "
                         f"benchmarks.unite_scale --set {args.set} first")
    clf = load_classifier(os.path.join(ds_dir, "classifier"))
    n_leaves = len(clf.labels.leaves)
    rows, calls = [], []

    def recording(seqs):                     # keep the per-rank calls
        calls.append(clf.predict_ranks(seqs))
        return calls[-1]
    for part in ("test", "val"):
        full = None
        for g in [0] + args.genera:
            t = time.time()
            with shortlisted(clf, g) as stats:
                s = accuracy.score(clf, ds_dir, part, ranks=recording)
            chosen, conf = calls[-1]
            if full is None:
                full = chosen, conf
            row = {"part": part, "genera": g or "all",
                   "right_call": s["right_call"],
                   "unseen_species_genus": s["unseen_species_genus_accuracy"],
                   "unseen_species_overcall": s["unseen_species_overcall"],
                   "unseen_genus_family": s["unseen_genus_family_accuracy"],
                   "n_queries": s["n_queries"],
                   "same_calls": float((chosen == full[0]).all(1).mean()),
                   "max_confidence_change": float(
                       np.abs(conf - full[1]).max()),
                   "lineages_per_read": (stats["kept"] / stats["rows"]
                                         if stats["rows"] else n_leaves),
                   "genus_mass_dropped": (stats["dropped_genus_mass"]
                                          / stats["rows"]
                                          if stats["rows"] else 0.0),
                   "seconds": time.time() - t}
            rows.append(row)
            print(json.dumps(row), flush=True)
    path = os.path.join(RESULTS, f"shortlist_probe_{args.set}.json")
    notes = {}
    if os.path.exists(path):         # keep the hand-written notes
        with open(path) as fh:
            notes = {k: v for k, v in json.load(fh).items() if k == "notes"}
    out = {"set": args.set, "n_lineages": n_leaves,
           "n_genera": clf.labels.n_classes[
               clf.labels.rank_names.index("genus")],
           "rows": rows, **notes}
    os.makedirs(RESULTS, exist_ok=True)
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1)
    from .unite_scale import collect, write_section
    write_section(collect())
    print(f"wrote {path} and docs/benchmarks.md")


if __name__ == "__main__":
    main()
