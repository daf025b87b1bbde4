"""The bench-*.png plots of docs/benchmarks.md (:mod:`.report`)."""
import os

from .metrics import RANKS


def region(dataset: str) -> str:
    return "ITS2" if dataset.startswith("its2") else (
        "ITS1" if dataset.startswith("its1") else "full ITS")


def plots(results: dict, img_dir: str) -> list:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(img_dir, exist_ok=True)
    made = []
    dsets = results["datasets"]
    fig, axes = plt.subplots(1, len(dsets), figsize=(6.5 * len(dsets), 4.2),
                             squeeze=False)
    for ax, (name, ds) in zip(axes[0], dsets.items()):
        for m in ds["methods"].values():
            ax.plot(RANKS, [m["metrics"]["rank_accuracy"][r] for r in RANKS],
                    marker="o", label=m["label"])
        ax.set(title=name, ylabel="accuracy (%)", ylim=(0, 100))
        ax.tick_params(axis="x", rotation=30)
        ax.grid(alpha=0.3)
    _legend(axes[0][0], fontsize=8)
    made.append(_save(fig, img_dir, "bench-rank-accuracy.png"))
    fig, axes = plt.subplots(1, len(dsets), figsize=(6.5 * len(dsets), 4.2),
                             squeeze=False)
    for ax, (name, ds) in zip(axes[0], dsets.items()):
        for mname, c in ds["calibration"].items():
            lab = ds["methods"][mname]["label"]
            line, = ax.plot(c["test"]["thresholds"], c["test"]["right_call"],
                            label=f"{lab} (test)")
            ax.plot(c["val"]["thresholds"], c["val"]["right_call"], "--",
                    color=line.get_color(), label=f"{lab} (validation)")
            ax.axvline(c["best_val_threshold"], color=line.get_color(),
                       alpha=0.4, lw=1)
        ax.set(title=name, xlabel="confidence threshold",
               ylabel="right-call rate (%)", ylim=(0, 100))
        ax.grid(alpha=0.3)
    _legend(axes[0][0], fontsize=8)
    made.append(_save(fig, img_dir, "bench-threshold.png"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for k, r in enumerate(("genus", "species")):
        ax = axes[k]
        ax.plot([0, 1], [0, 1], color="grey", lw=1)
        for name, ds in dsets.items():
            for mname, c in ds["calibration"].items():
                pts = c["reliability"][r]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                        label=f"{name}: {ds['methods'][mname]['label']}")
        ax.set(title=f"reliability at {r}", xlabel="confidence",
               ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
        ax.grid(alpha=0.3)
    _legend(axes[0], fontsize=7)
    made.append(_save(fig, img_dir, "bench-reliability.png"))
    sweeps = results.get("sweeps") or {}
    if sweeps:
        fig, axes = plt.subplots(1, len(sweeps), figsize=(6 * len(sweeps), 4),
                                 squeeze=False)
        for ax, (name, sw) in zip(axes[0], sweeps.items()):
            rows = sw["rows"]
            for t in sorted({r["threads"] for r in rows}):
                sel = [r for r in rows if r["threads"] == t
                       and r["batch_size"] != "auto"]
                line, = ax.plot([r["batch_size"] for r in sel],
                                [r["reads_per_second"] for r in sel],
                                marker="o", label=f"{t} thread(s)")
                for r in rows:
                    if r["threads"] == t and r["batch_size"] == "auto":
                        ax.axhline(r["reads_per_second"], ls="--", lw=1,
                                   color=line.get_color(),
                                   label=f"{t} thread(s), batch auto")
            ax.set(xscale="log", xlabel="batch size (reads)",
                   ylabel="reads/s", title=f"classify throughput (CPU), "
                   f"{region(name)}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        made.append(_save(fig, img_dir, "bench-throughput.png"))
    if results.get("scaling"):
        rows = results["scaling"]["rows"]
        fig, ax = plt.subplots(figsize=(6, 4))
        n = [r["reads"] for r in rows]
        ax.plot(n, [r["seconds_without_startup"] for r in rows], marker="o",
                label="classify time (s, start-up excluded)")
        ax.plot(n, [r["peak_rss_mib"] for r in rows], marker="s",
                label="peak RSS (MiB)")
        ax.set(xscale="log", yscale="log", xlabel="reads",
               title="barcodemamba classify scaling")
        ax.grid(alpha=0.3)
        ax.legend()
        made.append(_save(fig, img_dir, "bench-scaling.png"))
    return made


def _legend(ax, **kw):
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def _save(fig, img_dir, name):
    fig.tight_layout()
    fig.savefig(os.path.join(img_dir, name), dpi=110)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return name
