"""Matplotlib figures of the visualizers, written as PNG files.

``matplotlib.figure.Figure`` is used directly (no pyplot): no global state,
no display backend needed.
"""
import os
from typing import Dict, List, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

DPI = 100


def _save(fig: Figure, output_dir: str, name: str) -> str:
    fig.tight_layout()
    fig.savefig(os.path.join(output_dir, name), dpi=DPI)
    return name


def training_curves(history: pd.DataFrame, best_epoch, output_dir: str
                    ) -> str:
    """Loss per epoch: train and validation loss of the first run, train
    loss of the refit run (when there is one), best epoch marked."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    first = history[~history["refit"]]
    refit = history[history["refit"]]
    ax.plot(first["epoch"], first["train_loss"], "o-", label="train loss")
    if first["val_loss"].notna().any():
        ax.plot(first["epoch"], first["val_loss"], "s-",
                label="validation loss")
    if len(refit):
        ax.plot(refit["epoch"], refit["train_loss"], "^--",
                label="train loss, refit on all reads")
    if best_epoch:
        ax.axvline(best_epoch, color="grey", ls=":",
                   label=f"best epoch ({best_epoch})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (mean over ranks)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend()
    return _save(fig, output_dir, "training-curves.png")


def validation_accuracy(history: pd.DataFrame, ranks: Sequence[str],
                        output_dir: str) -> str:
    """Validation accuracy of each rank's head per epoch (first run)."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    first = history[~history["refit"]]
    for r in ranks:
        ax.plot(first["epoch"], first[f"val_accuracy_{r}"], "o-", label=r)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize="small", ncol=2)
    return _save(fig, output_dir, "validation-accuracy.png")


def calibration_curve(thresholds: Sequence[float], rates: Sequence[float],
                      best: float, output_dir: str) -> str:
    """Right-call rate on the validation split vs confidence threshold."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    ax.plot(thresholds, rates, "o-", label="right-call rate")
    ax.axvline(best, color="grey", ls=":", label=f"chosen threshold {best}")
    ax.set_xlabel("confidence threshold")
    ax.set_ylabel("share of validation reads called right\n"
                  "at their deepest knowable rank")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.legend()
    return _save(fig, output_dir, "calibration.png")


def rank_rates(results: List[Dict], output_dir: str) -> str:
    """Accuracy, under-call and over-call rate per rank, one line per
    classification."""
    fig = Figure(figsize=(12, 4))
    panels = [("accuracy", "accuracy"), ("under_call_rate", "under-call rate"),
              ("over_call_rate", "over-call rate")]
    for k, (col, title) in enumerate(panels):
        ax = fig.add_subplot(1, 3, k + 1)
        for res in results:
            m = res["rank_metrics"]
            ax.plot(range(len(m)), m[col], "o-", label=res["label"])
        names = results[0]["rank_metrics"]["rank"]
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=45, ha="right")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(title)
        if k == 0:
            ax.legend(fontsize="small")
    return _save(fig, output_dir, "rank-rates.png")


def reliability_diagram(results: List[Dict], output_dir: str) -> str:
    """Accuracy at the deepest predicted rank vs mean confidence per bin."""
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", ls=":", label="perfect calibration")
    for res in results:
        rel = res["reliability"]
        if rel is None:
            continue
        rel = rel[rel["n_reads"] > 0]
        ax.plot(rel["mean_confidence"], rel["accuracy"], "o-",
                label=f"{res['label']} (ECE {res['ece']:.3f})")
    ax.set_xlabel("mean confidence in bin")
    ax.set_ylabel("accuracy at deepest predicted rank")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize="small")
    return _save(fig, output_dir, "reliability.png")


def threshold_plot(results: List[Dict], output_dir: str) -> str:
    """Accuracy among retained calls and share of reads retained vs
    confidence threshold."""
    fig = Figure(figsize=(11, 4))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for res in results:
        cur = res["thresholds"]
        if cur is None:
            continue
        ax1.plot(cur["threshold"], cur["accuracy"], "o-", label=res["label"])
        ax2.plot(cur["threshold"], cur["retained_share"], "o-",
                 label=res["label"])
    ax1.set_ylabel("accuracy of calls with confidence >= t")
    ax2.set_ylabel("share of reads with a call and confidence >= t")
    for ax in (ax1, ax2):
        ax.set_xlabel("confidence threshold t")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize="small")
    return _save(fig, output_dir, "confidence-thresholds.png")


def confusion_heatmap(table: pd.DataFrame, title: str, output_dir: str,
                      name: str) -> str:
    """Heatmap of a confusion table, each row scaled to its read count;
    cells show read counts."""
    counts = table.to_numpy()
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    n_r, n_c = counts.shape
    fig = Figure(figsize=(max(6, 0.55 * n_c + 3), max(4, 0.45 * n_r + 2.5)))
    ax = fig.add_subplot()
    im = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i in range(n_r):
        for j in range(n_c):
            if counts[i, j]:
                ax.text(j, i, str(counts[i, j]), ha="center", va="center",
                        fontsize=8,
                        color="white" if shares[i, j] > 0.6 else "black")
    ax.set_xticks(range(n_c))
    ax.set_xticklabels(table.columns, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n_r))
    ax.set_yticklabels(table.index, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("expected")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label="share of the expected taxon's reads")
    return _save(fig, output_dir, name)
