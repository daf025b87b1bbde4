"""Registration and usage examples of the two visualizers.

plugin_setup.py calls :func:`register_visualizers` once; keeping the
registration here keeps plugin_setup.py short.
"""
import functools

from qiime2.plugin import Int, List, Range, Str
from q2_types.feature_data import FeatureData, Taxonomy

from ._examples import (_classifier_factory, _query_reads_factory,
                        _reference_taxonomy_factory)
from ._types import BarcodeMambaClassifier
from ._visualizers import evaluate_classifications, summarize_classifier


@functools.lru_cache(maxsize=None)
def _example_classifier():
    """One small classifier (1 epoch on 300 bundled yeast reads) shared by
    both examples, so the example tests fit it once."""
    return _classifier_factory()


def summarize_classifier_example(use):
    classifier = use.init_artifact("classifier", _example_classifier)
    viz, = use.action(
        use.UsageAction(plugin_id="barcodemamba",
                        action_id="summarize_classifier"),
        use.UsageInputs(classifier=classifier),
        use.UsageOutputNames(visualization="classifier_summary"))
    viz.assert_output_type("Visualization")
    viz.assert_has_line_matching("index.html", "Confidence calibration")


def evaluate_classifications_example(use):
    reads = use.init_artifact("reads", _query_reads_factory)
    classifier = use.init_artifact("classifier", _example_classifier)
    expected = use.init_artifact("expected_taxonomy",
                                 _reference_taxonomy_factory)
    auto, = use.action(
        use.UsageAction(plugin_id="barcodemamba", action_id="classify"),
        use.UsageInputs(reads=reads, classifier=classifier),
        use.UsageOutputNames(classification="classification_auto"))
    full, = use.action(
        use.UsageAction(plugin_id="barcodemamba", action_id="classify"),
        use.UsageInputs(reads=reads, classifier=classifier,
                        confidence="disable"),
        use.UsageOutputNames(classification="classification_full"))
    viz, = use.action(
        use.UsageAction(plugin_id="barcodemamba",
                        action_id="evaluate_classifications"),
        use.UsageInputs(classifications=[auto, full],
                        expected_taxonomy=expected,
                        labels=["confidence-auto", "confidence-disable"]),
        use.UsageOutputNames(visualization="evaluation"))
    viz.assert_output_type("Visualization")
    viz.assert_has_line_matching("index.html", "confidence-disable")


def register_visualizers(plugin, citations) -> None:
    """Register summarize-classifier and evaluate-classifications."""
    plugin.visualizers.register_function(
        function=summarize_classifier,
        inputs={"classifier": BarcodeMambaClassifier},
        parameters={},
        input_descriptions={
            "classifier": "A classifier from fit-classifier, of any "
                          "q2-barcodemamba version that this version "
                          "reads."},
        parameter_descriptions={},
        name="Summarize a BarcodeMamba+ classifier",
        description=(
            "Show what a trained classifier is: model preset and "
            "configuration, training parameters, tokenizer vocabulary, "
            "reference and validation read counts, classes per rank, the "
            "package and format version that wrote it; training and "
            "validation loss and per-rank validation accuracy per epoch; "
            "the confidence calibration (temperature, right-call rate per "
            "confidence threshold, the threshold 'auto' uses); and a "
            "plain-text description for methods sections. Tables are "
            "downloadable as TSV."),
        citations=[citations["barcodemamba_plus"],
                   citations["guo2017calibration"]],
        examples={"summarize_classifier_yeast_its":
                  summarize_classifier_example},
    )
    plugin.visualizers.register_function(
        function=evaluate_classifications,
        inputs={"classifications": List[FeatureData[Taxonomy]],
                "expected_taxonomy": FeatureData[Taxonomy]},
        parameters={
            "labels": List[Str],
            "confusion_rank": Str,
            "top_n": Int % Range(1, 100, inclusive_end=True),
            "n_bins": Int % Range(2, 100, inclusive_end=True),
        },
        input_descriptions={
            "classifications": (
                "One or more taxonomy classifications of the same reads "
                "(Taxon and, optionally, Confidence columns), e.g. the "
                "output of barcodemamba classify and of feature-classifier "
                "classify-sklearn, compared side by side. Every read must "
                "be in the expected taxonomy."),
            "expected_taxonomy": (
                "The true lineage of every classified read (it may list "
                "more reads), e.g. the taxonomy of held-out reference "
                "reads or of a mock community."),
        },
        parameter_descriptions={
            "labels": (
                "Names of the classifications on the page and in the TSV "
                "files, one per classification in the same order. Default: "
                "classification-1, classification-2, ..."),
            "confusion_rank": (
                "Rank of the confusion tables and heatmaps, named by the "
                "taxonomy's label prefixes (k__ kingdom, p__ phylum, c__ "
                "class, o__ order, f__ family, g__ genus, s__ species; "
                "'rankN' for unprefixed ranks). With the default 'genus' "
                "and a taxonomy without genus labels, the deepest rank is "
                "used."),
            "top_n": (
                "Number of most frequent expected taxa shown in the "
                "confusion tables; the rest are pooled as 'other'. Raise "
                "it to see rarer taxa (the heatmap grows with it)."),
            "n_bins": (
                "Number of equal-width confidence bins over [0, 1] of the "
                "reliability diagram and the expected calibration error. "
                "Use fewer bins for a few hundred reads, more for many "
                "thousands."),
        },
        name="Evaluate taxonomy classifications against the truth",
        description=(
            "Score one or more taxonomy classifications of reads with known "
            "taxonomy: per rank the share of reads that are correct, "
            "misclassified, under-called (the prediction stops above the "
            "expected rank) and over-called (it goes deeper than the "
            "expected lineage); a confusion table and heatmap of the most "
            "frequent taxa at one rank; a reliability diagram of "
            "Confidence vs accuracy at the deepest predicted rank with the "
            "expected calibration error; and, per confidence threshold, "
            "the share of reads kept and their accuracy. Lineages are "
            "compared after stripping spaces and cutting at the first "
            "empty or unknown rank (g__, __, unidentified)."),
        citations=[citations["bokulich2018"],
                   citations["guo2017calibration"]],
        examples={"evaluate_classifications_yeast_its":
                  evaluate_classifications_example},
    )
