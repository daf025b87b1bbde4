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
"""
import argparse
import hashlib
import os
import sys

from . import distributed as ddp
from .config import PRESETS, TrainConfig
from .data import read_fasta, read_taxonomy
from .pretrain import PretrainConfig, pretrain


def sha256_of_dir(path: str) -> str:
    h = hashlib.sha256()
    for name in sorted(os.listdir(path)):
        with open(os.path.join(path, name), "rb") as fh:
            h.update(name.encode() + b"\0" + fh.read())
    return h.hexdigest()


def cmd_pretrain(a) -> int:
    from .io import save_backbone
    recs = list(read_fasta(a.input))
    pc = PretrainConfig(epochs=a.epochs, batch_size=a.batch_size,
                        learning_rate=a.learning_rate,
                        max_length=a.max_length, vocab_size=a.vocab_size,
                        random_seed=a.random_seed, device=a.device,
                        n_threads=a.n_threads, log_every=a.log_every)
    tokenizer = None
    if a.tokenizer:
        from .tokenizer import DNATokenizer
        tokenizer = DNATokenizer.from_json(open(a.tokenizer).read())
    bb = pretrain([r for r, _ in recs], [s for _, s in recs], a.preset,
                  config=pc, tokenizer=tokenizer,
                  checkpoint_dir=a.checkpoint_dir)
    if ddp.is_main():
        bb.info["name"] = a.name or os.path.basename(os.path.abspath(a.output))
        bb.info["corpus"] = os.path.basename(a.input)
        save_backbone(bb, a.output)
        print(f"wrote {a.output}", file=sys.stderr)
    return 0


def cmd_fit(a) -> int:
    from .classifier import TaxonomicClassifier
    from .io import load_backbone, save_classifier
    from .backbones import shipped_backbone
    recs = list(read_fasta(a.reads))
    tax = read_taxonomy(a.taxonomy)
    tc = TrainConfig(epochs=a.epochs, batch_size=a.batch_size,
                     learning_rate=a.learning_rate, heads=a.heads,
                     hls_epsilon=a.hls_epsilon,
                     class_weight_power=a.class_weight_power,
                     random_seed=a.random_seed, device=a.device,
                     n_threads=a.n_threads, refit=not a.no_refit,
                     validation_fraction=a.validation_fraction)
    bb = (load_backbone(a.backbone) if a.backbone else
          None if a.no_pretrained else shipped_backbone(a.preset))
    mc = None
    if a.dropout is not None:
        from .config import preset
        mc = preset(a.preset, dropout=a.dropout)
    clf = TaxonomicClassifier(a.preset, model_config=mc, train_config=tc)
    clf.fit([r for r, _ in recs], [s for _, s in recs], tax, backbone=bb)
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m q2_barcodemamba.core.cli",
                                 description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    common.add_argument("--random-seed", type=int, default=0)
    common.add_argument("--device", default="auto")
    common.add_argument("--n-threads", type=int, default=0)

    p = sub.add_parser("pretrain", parents=[common],
                       help="next-token pretraining on unlabelled FASTA")
    p.add_argument("--input", required=True, help="FASTA (.gz ok)")
    p.add_argument("--output", required=True, help="new backbone directory")
    p.add_argument("--checkpoint-dir")
    p.add_argument("--tokenizer", help="reuse this tokenizer.json")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument("--log-every", type=int, default=200)
    p.add_argument("--name", help="name recorded in the backbone")
    # (not in the shared parent: argparse shares its action objects, so
    # per-command defaults would overwrite each other)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=8e-4)
    p.set_defaults(func=cmd_pretrain)

    e = sub.add_parser("export-checkpoint",
                       help="write the backbone of a pretraining checkpoint")
    e.add_argument("--checkpoint-dir", required=True)
    e.add_argument("--output", required=True)
    e.add_argument("--name")
    e.set_defaults(func=cmd_export)

    f = sub.add_parser("fit", parents=[common],
                       help="fit a classifier on reads + taxonomy")
    f.add_argument("--reads", required=True)
    f.add_argument("--taxonomy", required=True)
    f.add_argument("--output", required=True)
    f.add_argument("--backbone", help="backbone directory to fine-tune")
    f.add_argument("--no-pretrained", action="store_true")
    f.add_argument("--no-refit", action="store_true")
    f.add_argument("--heads", default="multi", choices=["multi", "single"])
    f.add_argument("--hls-epsilon", type=float, default=0.0)
    f.add_argument("--class-weight-power", type=float, default=0.0)
    f.add_argument("--dropout", type=float, help="override the preset's")
    f.add_argument("--validation-fraction", type=float, default=0.1)
    f.add_argument("--epochs", type=int, default=20)
    f.add_argument("--batch-size", type=int, default=32)
    f.add_argument("--learning-rate", type=float, default=None,
                   help="default: 3e-3 from scratch, 1e-3 fine-tuning")
    f.set_defaults(func=cmd_fit)
    a = ap.parse_args(argv)
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
