"""QIIME-free command line for long runs, e.g. under ``torchrun``.

Pretrain a backbone on a FASTA file (data parallel over 4 GPUs)::

    torchrun --nproc-per-node 4 -m q2_barcodemamba.core.cli pretrain \\
        --input corpus.fasta.gz --output backbone-dir --preset paper-12m \\
        --checkpoint-dir ckpt/

then ``qiime tools import --type BarcodeMambaBackbone --input-path
backbone-dir --output-path backbone.qza``. Fine-tune likewise with
``fit`` (writes a classifier directory that imports as
``BarcodeMambaClassifier``). In one process this is the same code the QIIME
actions run. Re-running with the same ``--checkpoint-dir`` resumes.
Defaults are those of :class:`.config.PretrainConfig` and
:class:`.config.TrainConfig`.
"""
import argparse
import os
import sys

from . import distributed as ddp
from .config import (DEFAULT_PRESET, FINETUNE_LR, PRECISIONS, PRESETS,
                     SCRATCH_LR, PretrainConfig, TrainConfig, preset)
from .data import read_reads, read_taxonomy
from .heads import HEADS

_T, _P = TrainConfig, PretrainConfig


def cmd_pretrain(a) -> int:
    from .io import save_backbone
    from .pretrain import pretrain
    ids, seqs = read_reads(a.input)
    pc = PretrainConfig(epochs=a.epochs, batch_size=a.batch_size,
                        learning_rate=a.learning_rate,
                        max_length=a.max_length, vocab_size=a.vocab_size,
                        random_seed=a.random_seed, device=a.device,
                        n_threads=a.n_threads, log_every=a.log_every)
    tokenizer = None
    if a.tokenizer:
        from .tokenizer import DNATokenizer
        tokenizer = DNATokenizer.from_json(open(a.tokenizer).read())
    bb = pretrain(ids, seqs, a.preset, config=pc, tokenizer=tokenizer,
                  checkpoint_dir=a.checkpoint_dir)
    if ddp.is_main():
        bb.info["name"] = a.name or os.path.basename(os.path.abspath(a.output))
        bb.info["corpus"] = os.path.basename(a.input)
        save_backbone(bb, a.output)
        print(f"wrote {a.output}", file=sys.stderr)
    return 0


def cmd_fit(a) -> int:
    from .backbones import choose_backbone
    from .classifier import TaxonomicClassifier
    from .io import load_backbone, save_classifier
    ids, seqs = read_reads(a.reads)
    tax = read_taxonomy(a.taxonomy)
    tc = TrainConfig(epochs=a.epochs, batch_size=a.batch_size,
                     learning_rate=a.learning_rate, heads=a.heads,
                     hls_epsilon=a.hls_epsilon,
                     class_weight_power=a.class_weight_power,
                     random_seed=a.random_seed, device=a.device,
                     n_threads=a.n_threads, refit=a.refit,
                     validation_fraction=a.validation_fraction,
                     memory=not a.no_memory,
                     kmer_similarity=not a.no_kmer_similarity,
                     abstention=a.abstention,
                     contrastive_weight=a.contrastive_weight,
                     augment=a.augment, select=a.select_epoch_by,
                     region_cutouts=not a.no_region_cutouts,
                     region_augment=a.region_augment,
                     query_region=a.query_region,
                     validation_errors=a.validation_errors,
                     unseen_genus_fraction=a.unseen_genus_fraction,
                     precision=a.precision)
    bb = choose_backbone(load_backbone(a.backbone) if a.backbone else None,
                         a.preset, not a.no_pretrained)
    mc = None if a.dropout is None else preset(a.preset, dropout=a.dropout)
    clf = TaxonomicClassifier(a.preset, model_config=mc, train_config=tc)
    clf.fit(ids, seqs, tax, backbone=bb)
    if ddp.is_main():
        save_classifier(clf, a.output)
        print(f"wrote {a.output}", file=sys.stderr)
    return 0


def cmd_export(a) -> int:
    from .io import save_backbone
    from .pretrain import backbone_from_checkpoint
    bb = backbone_from_checkpoint(a.checkpoint_dir)
    bb.info["name"] = a.name or os.path.basename(os.path.abspath(a.output))
    save_backbone(bb, a.output)
    print(f"wrote {a.output} (epoch {bb.info['checkpoint_epoch']})",
          file=sys.stderr)
    return 0


def _common(ap: argparse.ArgumentParser, cfg) -> None:
    """Options of both training commands, with the defaults of ``cfg``
    (argparse shares a parent parser's action objects, so per-command
    defaults are set per command)."""
    ap.add_argument("--preset", default=DEFAULT_PRESET,
                    choices=sorted(PRESETS))
    ap.add_argument("--random-seed", type=int, default=cfg.random_seed)
    ap.add_argument("--device", default=cfg.device)
    ap.add_argument("--n-threads", type=int, default=cfg.n_threads)
    ap.add_argument("--epochs", type=int, default=cfg.epochs)
    ap.add_argument("--batch-size", type=int, default=cfg.batch_size)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m q2_barcodemamba.core.cli",
                                 description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pretrain",
                       help="next-token pretraining on unlabelled FASTA")
    _common(p, _P)
    p.add_argument("--input", required=True, help="FASTA (.gz ok)")
    p.add_argument("--output", required=True, help="new backbone directory")
    p.add_argument("--checkpoint-dir")
    p.add_argument("--tokenizer", help="reuse this tokenizer.json")
    p.add_argument("--max-length", type=int, default=_P.max_length)
    p.add_argument("--vocab-size", type=int, default=_P.vocab_size)
    p.add_argument("--log-every", type=int, default=_P.log_every)
    p.add_argument("--name", help="name recorded in the backbone")
    p.add_argument("--learning-rate", type=float, default=_P.learning_rate)
    p.set_defaults(func=cmd_pretrain)

    e = sub.add_parser("export-checkpoint",
                       help="write the backbone of a pretraining checkpoint")
    e.add_argument("--checkpoint-dir", required=True)
    e.add_argument("--output", required=True)
    e.add_argument("--name")
    e.set_defaults(func=cmd_export)

    f = sub.add_parser("fit", help="fit a classifier on reads + taxonomy")
    _common(f, _T)
    f.add_argument("--reads", required=True)
    f.add_argument("--taxonomy", required=True)
    f.add_argument("--output", required=True)
    f.add_argument("--backbone", help="backbone directory to fine-tune")
    f.add_argument("--no-pretrained", action="store_true")
    f.add_argument("--refit", action="store_true", default=_T.refit)
    f.add_argument("--no-memory", action="store_true",
                   default=not _T.memory)
    f.add_argument("--no-kmer-similarity", action="store_true",
                   default=not _T.kmer_similarity)
    f.add_argument("--abstention", default=_T.abstention,
                   choices=("learned", "summed", "auto"))
    f.add_argument("--contrastive-weight", type=float,
                   default=_T.contrastive_weight)
    f.add_argument("--augment", type=float, default=_T.augment)
    f.add_argument("--no-region-cutouts", action="store_true",
                   default=not _T.region_cutouts)
    f.add_argument("--region-augment", type=float,
                   default=_T.region_augment)
    f.add_argument("--query-region", default=_T.query_region)
    f.add_argument("--validation-errors", type=float,
                   default=_T.validation_errors)
    f.add_argument("--select-epoch-by", default=_T.select,
                   choices=("right_call", "val_loss"))
    f.add_argument("--unseen-genus-fraction", type=float,
                   default=_T.unseen_genus_fraction)
    f.add_argument("--precision", default=_T.precision,
                   choices=PRECISIONS,
                   help="bf16: training's forward passes under bfloat16 "
                        "autocast (GPUs)")
    f.add_argument("--heads", default=_T.heads, choices=HEADS)
    f.add_argument("--hls-epsilon", type=float, default=_T.hls_epsilon)
    f.add_argument("--class-weight-power", type=float,
                   default=_T.class_weight_power)
    f.add_argument("--dropout", type=float, help="override the preset's")
    f.add_argument("--validation-fraction", type=float,
                   default=_T.validation_fraction)
    f.add_argument("--learning-rate", type=float, default=_T.learning_rate,
                   help=f"default: {SCRATCH_LR:g} from scratch, "
                        f"{FINETUNE_LR:g} fine-tuning")
    f.set_defaults(func=cmd_fit)
    return ap


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    code = a.func(a)
    ddp.finish(code)        # under torchrun: exit here, all together
    return code


if __name__ == "__main__":
    sys.exit(main())
