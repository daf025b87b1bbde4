"""Registration of the three methods (pretrain, fit-classifier, classify)
with their usage examples (:mod:`._examples`).

plugin_setup.py calls :func:`register_methods` once. Defaults come from the
signatures in _methods.py (which read :mod:`.core.config`); descriptions
that state a default read the same constants.
"""
import re

from qiime2.plugin import Bool, Choices, Float, Int, Range, Str
from q2_types.feature_data import FeatureData, Sequence, Taxonomy

from ._examples import (classify_example, fit_classifier_example,
                        fit_classifier_from_backbone_example,
                        pretrain_example)
from ._methods import classify, fit_classifier, pretrain
from ._types import BarcodeMambaBackbone, BarcodeMambaClassifier
from .core.classifier import CPU_BATCH_TOKENS, GPU_BATCH
from .core.config import PRECISIONS, PRESETS, SCRATCH_LR, TrainConfig
from .core.inference import DEFAULT_CONFIDENCE
from .core.novelty import MIN_MIX_SHIFT


def _sci(x: float) -> str:
    """3e-3 rather than 0.003 or 3e-03."""
    return re.sub(r"e-0*(\d)", r"e-\1", f"{x:.0e}")


# Knobs shared by the actions: one type and one description each.
SHARED_PARAMETERS = {
    "device": Str % Choices(["auto", "cpu", "cuda"]),
    "n_threads": Int % Range(0, None),
}
SHARED_DESCRIPTIONS = {
    "device": "Where the network runs: 'auto' uses a CUDA GPU when PyTorch "
              "sees one, else the CPU.",
    "n_threads": "CPU threads used by PyTorch (0 = PyTorch's default, "
                 "usually all cores). Has no effect on a GPU.",
}


def _register_pretrain(plugin, citations) -> None:
    plugin.methods.register_function(
        function=pretrain,
        inputs={"sequences": FeatureData[Sequence]},
        parameters={
            "preset": Str % Choices(sorted(PRESETS)),
            "epochs": Int % Range(1, None),
            "batch_size": Int % Range(1, None),
            "learning_rate": Float % Range(0, 1, inclusive_start=False),
            "max_length": Int % Range(16, None),
            "vocab_size": Int % Range(16, 65536),
            "checkpoint_dir": Str,
            "random_seed": Int % Range(0, None),
            **SHARED_PARAMETERS,
        },
        outputs=[("backbone", BarcodeMambaBackbone)],
        input_descriptions={
            "sequences": "Unlabelled barcode sequences (e.g. all ITS reads "
                         "of UNITE, or your own amplicons). Taxonomy is not "
                         "needed; the more sequences of the region you will "
                         "classify, the better.",
        },
        parameter_descriptions={
            "preset": "Model size of the backbone. 'tiny' (~0.45M backbone "
                      "parameters) runs on a laptop CPU; 'paper-12m' and "
                      "'paper-50m' are the sizes of the BarcodeMamba+ paper "
                      "and want a GPU. fit-classifier adopts this size.",
            "epochs": "Passes over the sequences (BarcodeMamba+: 15).",
            "batch_size": "Sequences per optimisation step.",
            "learning_rate": "Peak AdamW learning rate after a short warm-up, "
                             "then cosine decay (BarcodeMamba+: 8e-4).",
            "max_length": "BPE tokens kept per sequence (~6 bp each on ITS); "
                          "longer sequences keep their 5' end.",
            "vocab_size": "Size of the BPE vocabulary learnt on the "
                          "sequences, including 4 special tokens.",
            "checkpoint_dir": "A directory (created if needed) that receives "
                              "a checkpoint (safetensors + JSON) after every "
                              "epoch. Re-running the same command with the "
                              "same directory resumes after the last "
                              "finished epoch and gives the same backbone as "
                              "an uninterrupted run. Unset: no checkpoints.",
            "random_seed": "Seed for the validation sample, initialisation "
                           "and batch order.",
            **SHARED_DESCRIPTIONS,
        },
        output_descriptions={"backbone": "Pretrained backbone: tokenizer, "
                                         "weights and configuration, for "
                                         "fit-classifier's backbone input."},
        name="Pretrain a BarcodeMamba+ backbone on unlabelled sequences",
        description="Learn a BPE tokenizer on unlabelled barcodes, then train "
                    "the Mamba-2 backbone to predict each next token "
                    "(self-supervised). Fine-tune it with fit-classifier "
                    "--i-backbone. Progress (loss, tokens/s) is shown with "
                    "--verbose. For several GPUs, use torchrun with "
                    "'python -m q2_barcodemamba.core.cli pretrain' and import "
                    "the result with 'qiime tools import --type "
                    "BarcodeMambaBackbone'.",
        citations=[citations["barcodemamba_plus"], citations["mamba2"]],
        examples={"pretrain_unlabelled_its": pretrain_example},
    )


def _register_fit_classifier(plugin, citations) -> None:
    plugin.methods.register_function(
        function=fit_classifier,
        inputs={"reference_reads": FeatureData[Sequence],
                "reference_taxonomy": FeatureData[Taxonomy],
                "backbone": BarcodeMambaBackbone},
        parameters={
            "preset": Str % Choices(sorted(PRESETS)),
            "pretrained": Bool,
            "epochs": Int % Range(1, None),
            "batch_size": Int % Range(1, None),
            "learning_rate": Float % Range(0, 1, inclusive_start=False)
            | Str % Choices(["auto"]),
            "max_length": Int % Range(16, None),
            "validation_fraction": Float % Range(0, 0.5, inclusive_end=True),
            "refit": Bool,
            "heads": Str % Choices(["multi", "single"]),
            "hls_epsilon": Float % Range(0, 0.1, inclusive_end=True),
            "class_weight_power": Float % Range(0, 1, inclusive_end=True),
            "reference_memory": Bool,
            "kmer_similarity": Bool,
            "abstention": Str % Choices(["learned", "summed", "auto"]),
            "contrastive_weight": Float % Range(0, None),
            "augment": Float % Range(0, 1, inclusive_end=True),
            "region_cutouts": Bool,
            "region_augment": Float % Range(0, 1, inclusive_end=True),
            "query_region": Str,
            "validation_errors": Float % Range(0, 0.2, inclusive_end=True),
            "select_epoch_by": Str % Choices(["right_call", "val_loss"]),
            "unseen_genus_fraction": Float % Range(0, 0.2,
                                                   inclusive_end=True),
            "random_seed": Int % Range(0, None),
            "precision": Str % Choices(list(PRECISIONS)),
            **SHARED_PARAMETERS,
        },
        outputs=[("classifier", BarcodeMambaClassifier)],
        input_descriptions={
            "reference_reads": "Reference barcode reads (e.g. UNITE ITS "
                               "sequences) trimmed to the region your reads "
                               "cover.",
            "reference_taxonomy": "Lineage of every reference read, "
                                  "'k__...;p__...;...;s__...' with the same "
                                  "number of ranks for all reads. Records "
                                  "of other ids are ignored (--verbose "
                                  "counts them).",
            "backbone": "A pretrained backbone (from pretrain) to fine-tune; "
                        "its tokenizer and model size are used and 'preset' "
                        "is ignored. Without it the backbone shipped with "
                        "the package is used (see 'pretrained').",
        },
        parameter_descriptions={
            "preset": "Model size when no backbone is given. 'tiny' (~0.5M "
                      "parameters + heads) trains on a laptop CPU and has a "
                      "shipped pretrained backbone; 'small', 'paper-12m', "
                      "'paper-50m' (the paper's sizes) train from scratch "
                      "unless you pass a backbone, and want a GPU.",
            "pretrained": "Start from the pretrained 'tiny' backbone shipped "
                          "with the package (when no backbone input is given "
                          "and preset is 'tiny'). --p-no-pretrained trains "
                          "from random weights with a tokenizer learnt on "
                          "the reference.",
            "heads": "'multi': one classification head per rank plus a head "
                     "over whole reference lineages (BarcodeMamba+); "
                     "'single': only the lineage head. Predictions come from "
                     "the lineage head in both cases, so lineages are always "
                     "consistent.",
            "epochs": "Maximum passes over the reference; training stops "
                      "earlier when the validation score (see "
                      "'select_epoch_by') has not improved for "
                      f"{TrainConfig.patience} epochs.",
            "batch_size": "Reference reads per optimisation step.",
            "precision": "'fp32', or 'bf16' to run training's forward "
                         "passes and losses under bfloat16 autocast "
                         "(weights, gradients and optimiser state stay "
                         "float32; meant for GPUs: on a CPU without AMX "
                         "bf16 is slower). Validation, calibration and the "
                         "saved classifier are float32 either way.",
            "learning_rate": "Peak AdamW learning rate (after a linear "
                             "warm-up, then cosine decay). 'auto': "
                             f"{_sci(SCRATCH_LR)} from "
                             "random weights, the fine-tuning rate measured "
                             "best in docs/ablation.md from a pretrained "
                             "backbone.",
            "max_length": "Tokens kept per read (BPE tokens cover ~6 bp on "
                          "ITS); longer reads keep their 5' end.",
            "validation_fraction": "Share of reference reads held out, as "
                                   "whole haplotype clusters and whole "
                                   "species, for early stopping and "
                                   "confidence calibration. 0 trains on "
                                   "everything for 'epochs' epochs without "
                                   "calibration.",
            "refit": "After early stopping, train a fresh network on all "
                     "reference reads (validation reads included) for the "
                     "best number of epochs. Off by default: the "
                     "reference memory already holds every read, and the "
                     "calibration is fitted for the network that is "
                     "saved; with refit it comes from the first network.",
            "reference_memory": "Keep every reference read in the "
                                "classifier with its embedding; at classify "
                                "time the nearest reference reads vote on "
                                "the lineage beside the network (weights, "
                                "number of voters and vote temperature "
                                "chosen on the validation split, shown by "
                                "summarize-classifier).",
            "kmer_similarity": "Find nearest reference reads by k-mer "
                               "similarity (Jaccard index of 8-mers, "
                               "candidates from a 10-mer index) as well as "
                               "by embedding; measured to be the stronger "
                               "of the two (docs/accuracy.md).",
            "abstention": "'learned': the reported Confidence is the "
                          "probability that the call at that rank is right, "
                          "from a per-rank calibrator fitted on the "
                          "validation split (summed probability, nearest "
                          "read's similarity and its lead over other taxa). "
                          "'summed': the summed lineage probability, as "
                          "classify-sklearn reports. 'auto': whichever of "
                          "the two makes more right calls on the "
                          "validation split.",
            "contrastive_weight": "Weight of a supervised contrastive term "
                                  "that pulls reads of one species (and, "
                                  "half as strongly, one genus) together in "
                                  "the embedding the memory searches; 0 "
                                  "turns it off.",
            "augment": "Share of training reads replaced each epoch by a "
                       "variant (ends cropped by up to 5 %, 1 % "
                       "substitutions, 0.3 % indels). 0 turns it off (the "
                       "default; see docs/accuracy.md).",
            "region_cutouts": "Add the ITS1 and ITS2 amplicons of each "
                              "reference read (cut at the sites of common "
                              "primers: ITS1F/ITS1/ITS5-ITS2, fITS7/gITS7/"
                              "ITS86F/ITS3/5.8S-Fun-ITS4) to the reference "
                              "memory and to validation, so one classifier "
                              "fitted on full ITS serves ITS1 and ITS2 "
                              "amplicons too. A single-region reference "
                              "(under half of its reads hold both ITS1 and "
                              "ITS2, e.g. ITS1 reads with a few full-ITS "
                              "ones) is left unchanged.",
            "region_augment": "Share of training reads replaced each epoch "
                              "by one of their ITS1/ITS2 amplicons (cut "
                              "with each primer of the common pairs). 0 "
                              "turns it off.",
            "validation_errors": "Validation also asks a copy of each "
                                 "held-out read with sequencing errors at "
                                 "a per-base rate drawn up to this value "
                                 "(half substitutions, half indels), so "
                                 "the calibrator learns how far errors "
                                 "lower the similarity of right calls "
                                 "(long reads: 1-5 % errors). 0 turns it "
                                 "off.",
            "query_region": "'any' (the default: full ITS and its "
                            "amplicons), or the region or primer pair the "
                            "query reads come from: 'ITS1', 'ITS2', a pair "
                            "of primer names such as 'fITS7-ITS4' or "
                            "'ITS1F-ITS2', or two primer sequences "
                            "'FWDSEQ,REVSEQ' (IUPAC). The reference is then "
                            "cut to that amplicon before fitting, like "
                            "feature-classifier extract-reads (reads where "
                            "it is not found are kept whole).",
            "select_epoch_by": "Which epoch to keep: 'right_call', the "
                               "share of validation reads called right at "
                               "their deepest knowable rank by the whole "
                               "classifier; 'val_loss', the lowest "
                               "validation loss of the network.",
            "unseen_genus_fraction": "Share of reference reads held out for "
                                     "validation as whole genera (their "
                                     "family stays), so the calibrator "
                                     "learns when to stop at the family.",
            "hls_epsilon": "Hierarchical label smoothing: probability mass "
                           "per ancestor rank spread over the taxa that "
                           "share that ancestor with the true taxon, by "
                           "their frequency (MycoAI, BarcodeMamba+ use "
                           "0.02). 0 uses flat label smoothing of "
                           f"{TrainConfig.label_smoothing:g} instead.",
            "class_weight_power": "Weight each class's loss by n^-power (n = "
                                  "its reference reads): 0.5 is the inverse "
                                  "square root of BarcodeMamba+, favouring "
                                  "rare taxa; 0 weights all reads equally.",
            "random_seed": "Seed for the split, initialisation and batch "
                           "order; the same seed gives the same classifier "
                           "on CPU.",
            **SHARED_DESCRIPTIONS,
        },
        output_descriptions={
            "classifier": "Trained BarcodeMamba+ classifier."},
        name="Train a BarcodeMamba+ classifier",
        description="Train a BarcodeMamba+ taxonomic classifier "
                    "(tokenizer, Mamba-2 network, per-rank heads, a memory "
                    "of the reference reads, learned per-rank confidence) "
                    "on reference reads and their taxonomy.",
        citations=[citations["barcodemamba_plus"], citations["mamba2"],
                   citations["khosla2020supcon"],
                   citations["zhou2024dnaberts"],
                   citations["khandelwal2020knnlm"],
                   citations["ondov2016mash"],
                   citations["vu2022dnabarcoder"],
                   citations["meier2006dna"]],
        examples={"fit_classifier_yeast_its": fit_classifier_example,
                  "fit_classifier_from_backbone":
                  fit_classifier_from_backbone_example},
    )


def _register_classify(plugin, citations) -> None:
    plugin.methods.register_function(
        function=classify,
        inputs={"reads": FeatureData[Sequence],
                "classifier": BarcodeMambaClassifier},
        parameters={
            "confidence": Float % Range(0, 1, inclusive_end=True)
            | Str % Choices(["auto", "disable"]),
            "read_orientation": Str % Choices(["auto", "same",
                                               "reverse-complement"]),
            "batch_size": Int % Range(1, None) | Str % Choices(["auto"]),
            "precision": Str % Choices(list(PRECISIONS)),
            "novel_species": Float % Range(0, 1, inclusive_end=True),
            "novel_genera": Float % Range(0, 1, inclusive_end=True),
            **SHARED_PARAMETERS,
        },
        outputs=[("classification", FeatureData[Taxonomy])],
        input_descriptions={
            "reads": "Reads (features) to classify.",
            "classifier": "A classifier from fit-classifier.",
        },
        parameter_descriptions={
            "confidence": "Report each read's lineage down to the deepest "
                          "rank whose confidence (the summed calibrated "
                          "probability of all reference lineages below that "
                          "taxon) is at least this value; 'disable' reports "
                          "the full lineage. Reads failing even the top rank "
                          "are 'Unassigned'. 'auto' uses the threshold that "
                          "gave the most right calls on the held-out "
                          "haplotypes and species of the classifier's "
                          f"validation split ({DEFAULT_CONFIDENCE} when it "
                          f"was trained without one); {DEFAULT_CONFIDENCE} is "
                          "classify-sklearn's default.",
            "read_orientation": "'auto' decides per read, by which strand "
                                "shares more 10-mers with the reference; "
                                "'same' or 'reverse-complement' skip the "
                                "check.",
            "batch_size": "Reads per forward pass. Memory grows with it, not "
                          "with the number of reads. 'auto': on a CPU, "
                          f"batches of at most {CPU_BATCH_TOKENS:,} padded "
                          "tokens (64 full-ITS or ~200 ITS2 reads; larger "
                          "batches are slower on a CPU), on a GPU "
                          f"{GPU_BATCH} reads: the fastest measured.",
            "precision": "'fp32', or 'bf16' to run the network under "
                         "bfloat16 autocast (meant for GPUs; the walk and "
                         "the calibration stay in float32). bf16 changed 3 "
                         "of 2,000 calls of UNITE ITS2 reads in our CPU "
                         "measurement (docs/gpu.md); not yet measured on a "
                         "GPU.",
            "novel_species": "The share of the reads you expect to come "
                             "from species missing in the reference (e.g. "
                             "0.8 for environmental reads against a "
                             "reference of mostly one read per species). "
                             "The confidence, its calibrator and the 'auto' "
                             "threshold are then chosen again on the "
                             "classifier's validation reads weighted to that "
                             "mix (a change of prior, Saerens et al. 2002): "
                             "a larger share makes species calls rarer and "
                             "genus calls more frequent. Unset, or within "
                             f"{MIN_MIX_SHIFT:g} of the validation split's "
                             "mix (about 0.45; summarize-classifier says), "
                             "the fitted calibration is kept. Set it only "
                             "for samples mostly of missing species: "
                             "overstating it costs right calls. Needs a "
                             "classifier fitted with 0.5.0 or later.",
            "novel_genera": "With novel-species: the share of the reads "
                            "expected from genera missing in the reference "
                            "(at most novel-species). Unset: the validation "
                            "split's part of novel-species.",
            **SHARED_DESCRIPTIONS,
        },
        output_descriptions={"classification": "Taxonomy (Taxon, Confidence) "
                                               "per read."},
        name="Classify reads with a BarcodeMamba+ classifier",
        description="Assign taxonomy to reads with a trained BarcodeMamba+ "
                    "classifier; reads are streamed in batches.",
        citations=[citations["barcodemamba_plus"],
                   citations["khandelwal2020knnlm"],
                   citations["ondov2016mash"],
                   citations["saerens2002adjusting"]],
        examples={"classify_yeast_its": classify_example},
    )


def register_methods(plugin, citations) -> None:
    """Register pretrain, fit-classifier and classify."""
    _register_pretrain(plugin, citations)
    _register_fit_classifier(plugin, citations)
    _register_classify(plugin, citations)
