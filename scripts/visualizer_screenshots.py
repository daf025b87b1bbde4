"""Make the screenshots of docs/visualizers.md from a real run.

Fits a tiny BarcodeMamba+ classifier on the reads of the 6 largest genera
of the bundled CBS yeast ITS set, minus held-out haplotypes and species
(grouped split, as fit-classifier's validation), classifies the held-out
reads with it and with classify-sklearn (naive Bayes on the same
reference), then writes summarize-classifier and evaluate-classifications
visualizations and full-page headless-Chromium screenshots of both.

    .venv/bin/python scripts/visualizer_screenshots.py [--output-dir DIR]

12-23 minutes measured on 2 busy CPU cores. Prints the numbers shown on
the pages.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

import pandas as pd  # noqa: E402
import qiime2  # noqa: E402

from q2_barcodemamba.core.classifier import TaxonomicClassifier  # noqa
from q2_barcodemamba.core.config import TrainConfig  # noqa: E402
from q2_barcodemamba.core.data import clean_sequence  # noqa: E402
from q2_barcodemamba.core.split import grouped_split  # noqa: E402
from q2_barcodemamba.core.taxonomy import parse_taxonomy  # noqa: E402
from q2_barcodemamba.tests import browser  # noqa: E402
from q2_barcodemamba.tests.helpers import small_reference  # noqa: E402


def taxonomy_artifact(tax: dict):
    s = pd.Series(tax, name="Taxon")
    s.index.name = "Feature ID"
    return qiime2.Artifact.import_data("FeatureData[Taxonomy]", s)


def reads_artifact(reads: dict):
    return qiime2.Artifact.import_data("FeatureData[Sequence]",
                                       pd.Series(reads), pd.Series)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output-dir", default="visualizer-screenshots")
    ap.add_argument("--images-dir", default=os.path.join(HERE, "..", "docs",
                                                         "images"))
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args()
    os.makedirs(args.output_dir, exist_ok=True)
    os.makedirs(args.images_dir, exist_ok=True)
    from qiime2.plugins import barcodemamba, feature_classifier

    ids, seqs, tax = small_reference()
    seqs = [clean_sequence(s, i) for i, s in zip(ids, seqs)]
    lineages = parse_taxonomy(ids, [tax[i] for i in ids])
    ref, query = grouped_split(seqs, lineages, 0.1, seed=0)
    print(f"{len(ref)} reference reads, {len(query)} held-out query reads "
          f"of {len({tax[ids[i]].split(';')[5] for i in ref})} genera",
          flush=True)
    ref_ids = [ids[i] for i in ref]
    tc = TrainConfig(epochs=args.epochs, n_threads=2, random_seed=0)
    clf = TaxonomicClassifier("tiny", train_config=tc).fit(
        ref_ids, [seqs[i] for i in ref], {i: tax[i] for i in ref_ids})
    clf_art = qiime2.Artifact.import_data("BarcodeMambaClassifier", clf,
                                          view_type=TaxonomicClassifier)
    ref_reads = reads_artifact({ids[i]: seqs[i] for i in ref})
    ref_tax = taxonomy_artifact({i: tax[i] for i in ref_ids})
    query_reads = reads_artifact({ids[i]: seqs[i] for i in query})
    expected = taxonomy_artifact({ids[i]: tax[ids[i]] for i in query})

    ours, = barcodemamba.methods.classify(reads=query_reads,
                                          classifier=clf_art, n_threads=2)
    nb, = feature_classifier.methods.fit_classifier_naive_bayes(
        reference_reads=ref_reads, reference_taxonomy=ref_tax)
    sklearn, = feature_classifier.methods.classify_sklearn(
        reads=query_reads, classifier=nb, n_jobs=1)
    summary, = barcodemamba.visualizers.summarize_classifier(
        classifier=clf_art)
    evaluation, = barcodemamba.visualizers.evaluate_classifications(
        classifications=[ours, sklearn], expected_taxonomy=expected,
        labels=["barcodemamba", "classify-sklearn"])

    for name, viz in (("summarize-classifier", summary),
                      ("evaluate-classifications", evaluation)):
        qzv = os.path.join(args.output_dir, name + ".qzv")
        viz.save(qzv)
        data = browser.extract_visualization(
            qzv, os.path.join(args.output_dir, name))
        index = os.path.join(data, "index.html")
        page = browser.check_page(index)
        png = os.path.join(args.images_dir, name + ".png")
        browser.screenshot(index, png)
        print(f"{name}: {qzv}, screenshot {png}; JS errors "
              f"{page['errors']}, images loaded "
              f"{sum(i['naturalWidth'] > 0 for i in page['images'])}/"
              f"{len(page['images'])}")
        if name == "summarize-classifier":
            keys = ["n-parameters", "n-reference-reads", "n-validation",
                    "best-epoch", "temperature", "best-confidence",
                    "best-rate"]
        else:
            keys = [f"{m}-{k}-{r}" for k in (1, 2)
                    for m in ("accuracy", "under-call", "over-call")
                    for r in ("genus", "species")]
            keys += [f"{m}-{k}" for k in (1, 2)
                     for m in ("n-reads", "deepest-accuracy", "ece")]
        for k in keys:
            print(f"  {k}: {browser.element_text(page['dom'], k)}")


if __name__ == "__main__":
    main()
