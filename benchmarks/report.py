"""docs/benchmarks.md and the bench-*.png plots from results.json."""
import math
import os
import platform
import subprocess
import time

from .metrics import RANKS

IMPORT_COMMANDS = """\
qiime tools import --type 'FeatureData[Sequence]' --input-path split/reference.fasta --output-path qza/reference.qza
qiime tools import --type 'FeatureData[Taxonomy]' --input-path split/reference-taxonomy.tsv --output-path qza/reference-taxonomy.qza
qiime tools import --type 'FeatureData[Sequence]' --input-path split/test.fasta --output-path qza/test.qza
qiime tools import --type 'FeatureData[Sequence]' --input-path qza/one.fasta --output-path qza/one.qza"""


def _f(x, digits=1):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{digits}f}"


def machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as fh:
            kb = int(next(line for line in fh
                          if line.startswith("MemTotal")).split()[1])
        mem = f"{kb / 2 ** 20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count())
    return {"cpu": cpu, "cores": cores, "memory": mem,
            "os": platform.platform()}


def versions() -> dict:
    import numpy
    import qiime2
    import q2_feature_classifier
    import sklearn
    import torch
    import q2_barcodemamba
    out = {"python": platform.python_version(), "qiime2": qiime2.__version__,
           "q2-feature-classifier": q2_feature_classifier.__version__,
           "q2-barcodemamba": q2_barcodemamba.__version__,
           "torch": torch.__version__, "scikit-learn": sklearn.__version__,
           "numpy": numpy.__version__}
    for tool, arg in (("vsearch", "--version"), ("blastn", "-version")):
        try:
            p = subprocess.run([tool, arg], capture_output=True, text=True)
            out[tool] = next(line.split(",")[0].split()[-1] for line in
                             (p.stdout + p.stderr).splitlines()
                             if line.startswith(tool))
        except (OSError, StopIteration, IndexError):
            out[tool] = "not found"
    return out


def method_table(ds: dict) -> list:
    lines = ["| method | right call | seen: species | unseen sp.: genus | "
             "unseen sp.: species over-call | unseen gen.: family | unseen "
             "gen.: genus over-call | fit s | reads/s | start-up s | peak "
             "RSS fit / classify MiB | model MiB | threads |",
             "|---" * 13 + "|"]
    for m in ds["methods"].values():
        x = m["metrics"]
        fit = m.get("fit", {})
        lines.append(
            f"| {m['label']} | {_f(x['right_call'])} | "
            f"{_f(x['seen_species_accuracy'])} | "
            f"{_f(x['unseen_species_genus_accuracy'])} | "
            f"{_f(x['unseen_species_overcall'])} | "
            f"{_f(x['unseen_genus_family_accuracy'])} | "
            f"{_f(x['unseen_genus_overcall'])} | "
            f"{_f(fit.get('seconds'), 0)} | "
            f"{_f(m['reads_per_second'], 0)} | "
            f"{_f(m['startup_seconds'])} | "
            f"{_f(fit.get('peak_rss_mib'), 0)} / "
            f"{_f(m['classify']['peak_rss_mib'], 0)} | "
            f"{_f(m['model_mib'])} | {m['threads']} |")
    return lines


def rank_table(ds: dict) -> list:
    lines = ["| method | " + " | ".join(RANKS) + " | right call: seen / "
             "unseen sp. / unseen gen. |", "|---" * (len(RANKS) + 2) + "|"]
    for m in ds["methods"].values():
        x = m["metrics"]
        per = x["right_call_per_category"]
        lines.append(f"| {m['label']} | " + " | ".join(
            _f(x["rank_accuracy"][r]) for r in RANKS) + " | "
            + " / ".join(_f(per[c]) for c in ("seen", "unseen_species",
                                             "unseen_genus")) + " |")
    return lines


def calibration_table(ds: dict) -> list:
    lines = ["| method | ECE " + " | ".join(RANKS) + " | default threshold "
             "| best on validation | test right call at 0.7 / best-val / "
             "default | Python = CLI calls |",
             "|---" * (len(RANKS) + 5) + "|"]
    for name, c in ds["calibration"].items():
        at = c["test_right_call_at"]
        lines.append(
            f"| {ds['methods'][name]['label']} | " + " | ".join(
                _f(c["ece"][r]) for r in RANKS)
            + f" | {c['default_threshold']:g} | {c['best_val_threshold']:g}"
            f" | {_f(at['0.7'])} / {_f(at['best_val'])} / "
            f"{_f(at['default'])} | {_f(c['cli_agreement'])} % |")
    return lines


def targets(ds: dict) -> list:
    """Where barcodemamba stands against the issue's targets."""
    ms = ds["methods"]
    if "barcodemamba" not in ms:
        return []
    bm = ms["barcodemamba"]["metrics"]
    others = [m for m in ("naive-bayes", "vsearch", "vsearch-top-hit",
                          "blast") if m in ms]
    out = []
    for key, what in (("right_call", "right-call rate"),
                      ("seen_species_accuracy", "seen-species accuracy")):
        best = max(others, key=lambda m: ms[m]["metrics"][key], default=None)
        if best:
            gap = bm[key] - ms[best]["metrics"][key]
            out.append(f"- {what}: barcodemamba {_f(bm[key])} vs best "
                       f"baseline {ms[best]['label']} "
                       f"{_f(ms[best]['metrics'][key])} "
                       f"({gap:+.1f} points; target ≥ +5)")
    if "naive-bayes" in ms:
        nb = ms["naive-bayes"]["metrics"]
        out.append("- unseen species: genus accuracy "
                   f"{_f(bm['unseen_species_genus_accuracy'])} vs NB "
                   f"{_f(nb['unseen_species_genus_accuracy'])} (target "
                   "≥ NB); species over-calls "
                   f"{_f(bm['unseen_species_overcall'])} vs NB "
                   f"{_f(nb['unseen_species_overcall'])} (target < NB)")
        r_bm = ms["barcodemamba"]["reads_per_second"]
        r_nb = ms["naive-bayes"]["reads_per_second"]
        out.append(f"- throughput: barcodemamba {_f(r_bm, 0)} reads/s vs "
                   f"classify-sklearn {_f(r_nb, 0)} reads/s (target: within "
                   "2×; ≥ 200 reads/s full ITS, ≥ 500 reads/s ITS2)")
    return out


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
    if results.get("sweep"):
        fig, ax = plt.subplots(figsize=(6, 4))
        rows = results["sweep"]["rows"]
        for t in sorted({r["threads"] for r in rows}):
            sel = [r for r in rows if r["threads"] == t]
            ax.plot([r["batch_size"] for r in sel],
                    [r["reads_per_second"] for r in sel], marker="o",
                    label=f"{t} thread(s)")
        ax.set(xscale="log", xlabel="batch size (reads)", ylabel="reads/s",
               title="barcodemamba classify throughput (CPU)")
        ax.grid(alpha=0.3)
        ax.legend()
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


def headline(results: dict) -> str:
    out = []
    for name, ds in results["datasets"].items():
        out += [f"\n{name}", *method_table(ds)]
    return "\n".join(out)


def write_report(results: dict, report_dir: str) -> str:
    img_dir = os.path.join(report_dir, "images")
    pngs = plots(results, img_dir)
    mach, vers = machine(), versions()
    mode = results["mode"]
    L = [f"# Benchmarks ({mode} mode)", "",
         f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `python -m "
         f"benchmarks.run {' '.join(results['argv'])}` in "
         f"{results['wall_seconds'] / 60:.1f} min wall, "
         f"{results.get('cpu_seconds', float('nan')) / 60:.1f} min CPU "
         "(user + system, all processes; this invocation only: steps "
         "already on disk are reused)."]
    if mode == "quick":
        L += ["", "**Quick mode** is a smoke test: small query sets, "
              f"barcodemamba fit with `--p-epochs {results['epochs']}`. Its "
              "numbers "
              "say the harness works, not how good the methods are; "
              "`make bench` (full mode) gives the numbers to quote."]
    L += ["", "## Machine and versions", "",
          f"- CPU: {mach['cpu']}, {mach['cores']} cores available; "
          f"{mach['memory']}; {mach['os']}",
          "- load average (1, 5, 15 min) at the end of the run: "
          + ", ".join(f"{x:.1f}" for x in results.get("loadavg", []))
          + " (other work on the machine slows every timing)",
          "- " + ", ".join(f"{k} {v}" for k, v in vers.items()), "",
          "## How to reproduce", "", "```sh",
          "make bench         # = .venv/bin/python -m benchmarks.run --full"
          "  (writes this file)",
          "make bench-quick   # = .venv/bin/python -m benchmarks.run --quick",
          "```", "",
          "## Splits", "",
          "Queries come from reads with all 7 ranks known and a named "
          "species. *Seen*: a held-out haplotype cluster (8-mer Jaccard < 0.9"
          " to every other cluster of its species, about < 99 % identity) of "
          "a species that keeps other clusters in the reference; *unseen "
          "species*: every read of the species removed, its genus kept "
          "(right answer: genus); *unseen genus*: every read of the genus "
          "removed, its family kept (right answer: family). Test and "
          "validation queries come from different taxa; validation is used "
          "only to choose a confidence threshold. No query equals a "
          "reference read or its reverse complement (checked). Caveat: "
          "barcodemamba's shipped backbone (where fit-classifier starts by "
          "default) was pretrained on an unlabelled corpus that contains "
          "every unique sequence of the shared ITS sets, query sequences "
          "included, never their labels (docs/pretraining.md).", "",
          "| data set | records | reference | test seen / unseen sp. / unseen"
          " gen. | validation | removed, not queried | dropped (identical "
          "to a reference read) |", "|---|---|---|---|---|---|---|"]
    for name, ds in results["datasets"].items():
        s = ds["split"]
        q = s["queries"]
        L.append(f"| {name} | {s['n_records']} | {s['n_reference']} | "
                 + " / ".join(str(q['test'][c]) for c in q["test"]) + " | "
                 + " / ".join(str(q['val'][c]) for c in q["val"]) + f" | "
                 f"{s['n_removed_not_queried']} | "
                 f"{s['dropped_identical_to_reference']} |")
    L += ["", "## Scores", "",
          "All in percent of test queries. A rank is *knowable* when the "
          "query's true taxon down to it is in the reference; a call is right"
          " at a rank when it names the true taxon there (knowable) or "
          "asserts nothing there (not knowable). **Right call** = right at "
          "every rank (deepest knowable rank correct, nothing deeper). "
          "Over-call = share of unseen-species queries given any species "
          "(unseen genera: any genus). Each method's own default confidence "
          "(barcodemamba: `auto`). *fit s*: wall time of the fit command; "
          "*reads/s*: test queries / (classify wall time − wall time of the "
          "same command on 1 read), i.e. process start-up and model loading "
          "excluded (*start-up s*); with few queries this is noisy. Peak RSS"
          " from `/usr/bin/time -v`. Model size: the classifier .qza "
          "(vsearch/BLAST: the reference .qza files they search).", ""]
    for name, ds in results["datasets"].items():
        L += [f"### {name}", "", *method_table(ds), "",
              "Accuracy per rank:", "", *rank_table(ds), ""]
        tg = targets(ds)
        if tg:
            L += ["Targets of issue 5:", "", *tg, ""]
    L += ["![accuracy per rank](images/bench-rank-accuracy.png)", "",
          "## Calibration and confidence threshold", "",
          "Per-rank confidences come from the fitted models (loaded with the"
          " QIIME 2 Artifact API) summed up the taxonomy as each classify "
          "action does; the last column shows the share of test calls that "
          "match the CLI output at the default threshold. ECE = expected "
          "calibration error (10 bins, percent points) of the confidence at "
          "each rank on the test queries; a label at a rank the reference "
          "cannot know counts as wrong. The best threshold maximises the "
          "right-call rate on the validation queries and is then scored on "
          "the test queries.", ""]
    for name, ds in results["datasets"].items():
        L += [f"### {name}", "", *calibration_table(ds), ""]
    L += ["![right call vs threshold](images/bench-threshold.png)", "",
          "![reliability](images/bench-reliability.png)", ""]
    if results.get("sweep"):
        L += ["## Throughput vs batch size and threads", "",
              "barcodemamba (default preset, "
              f"{next(iter(results['datasets']))}), "
              f"{results['sweep']['n_reads']} reads sampled with "
              "replacement from the queries, in-process core API (no "
              "start-up), CPU.", "", "| threads | batch size | reads/s |",
              "|---|---|---|"]
        L += [f"| {r['threads']} | {r['batch_size']} | "
              f"{_f(r['reads_per_second'], 0)} |"
              for r in results["sweep"]["rows"]]
        L += ["", "![throughput](images/bench-throughput.png)", ""]
    if results.get("scaling"):
        rows = results["scaling"]["rows"]
        L += ["## Scaling", "",
              f"`qiime barcodemamba classify` (defaults) on reads sampled "
              f"with replacement from the {results['scaling']['dataset']} "
              "queries; time excludes the 1-read start-up.", "",
              "| reads | classify s | s per 1,000 reads | reads/s | peak RSS "
              "MiB |", "|---|---|---|---|---|"]
        L += [f"| {r['reads']:,} | {_f(r['seconds_without_startup'])} | "
              f"{_f(1000 * r['seconds_without_startup'] / r['reads'], 2)} | "
              f"{_f(r['reads_per_second'], 0)} | {_f(r['peak_rss_mib'], 0)} |"
              for r in rows]
        L += ["", "![scaling](images/bench-scaling.png)", ""]
    L += ["## Exact commands", "",
          "Run in `<out>/<data set>/` (`--out`, default "
          "benchmarks/results/<mode>). Data: "
          + "; ".join(f"{n}: `{os.path.relpath(ds['data']['fasta'])}`"
                      for n, ds in results["datasets"].items()), "",
          "```sh", IMPORT_COMMANDS]
    first = next(iter(results["datasets"].values()))
    for m in first["methods"].values():
        L += [f"# {m['label']}", *m["commands"]]
    if results.get("scaling"):
        L += ["# scaling (in <out>/, per number of reads N)",
              *results["scaling"]["commands"]]
    L += ["```", ""]
    L.append("Plots: " + ", ".join(f"`images/{p}`" for p in pngs))
    os.makedirs(report_dir, exist_ok=True)
    path = os.path.join(report_dir, "benchmarks.md")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(L) + "\n")
    return path
