"""docs/benchmarks.md and the bench-*.png plots from results.json."""
import math
import os
import re
import platform
import subprocess
import time

from q2_barcodemamba.core.classifier import CPU_BATCH_TOKENS, CPU_MAX_BATCH

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


def git_commit() -> str:
    """Commit of the code that wrote the report (``+dirty`` with local
    changes to the package or the harness; docs do not count)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", repo, "rev-parse", "--short",
                               "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain",
                                "--untracked-files=no", "--",
                                "q2_barcodemamba", "benchmarks"],
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def region(dataset: str) -> str:
    return "ITS2" if dataset.startswith("its2") else (
        "ITS1" if dataset.startswith("its1") else "full ITS")


HEADLINE_COLUMNS = (
    ("right_call", "right call"),
    ("seen_species_accuracy", "seen: species"),
    ("unseen_species_genus_accuracy", "unseen sp.: genus"),
    ("unseen_species_overcall", "unseen sp.: species over-call"),
    ("unseen_genus_family_accuracy", "unseen gen.: family"),
)


def headline_table(results: dict) -> list:
    """One row per method, both data sets side by side (percent; the best
    value of each column in bold; over-calls: lower is better)."""
    dsets = results["datasets"]
    names = list(dsets)
    head = ["method"] + [f"{lab} ({region(n)})" for n in names
                         for _, lab in HEADLINE_COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    methods = []
    for ds in dsets.values():
        methods += [m for m in ds["methods"] if m not in methods]
    best = {}
    for n in names:
        for key, _ in HEADLINE_COLUMNS:
            vals = [m["metrics"][key] for m in dsets[n]["methods"].values()
                    if not math.isnan(m["metrics"][key])]
            if vals:
                best[n, key] = (min if "overcall" in key else max)(vals)
    for name in methods:
        label = next(ds["methods"][name]["label"] for ds in dsets.values()
                     if name in ds["methods"])
        cells = [label]
        for n in names:
            m = dsets[n]["methods"].get(name)
            for key, _ in HEADLINE_COLUMNS:
                v = m["metrics"][key] if m else None
                txt = _f(v)
                if v is not None and best.get((n, key)) == v:
                    txt = f"**{txt}**"
                cells.append(txt)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


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


def _mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def targets(ds: dict, region: str = "full ITS", sweep: dict = None
            ) -> list:
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
                       f"({gap:+.1f} points; target ≥ +5: "
                       f"{_mark(gap >= 5)})")
    if "naive-bayes" in ms:
        nb = ms["naive-bayes"]["metrics"]
        g_bm, g_nb = (bm["unseen_species_genus_accuracy"],
                      nb["unseen_species_genus_accuracy"])
        o_bm, o_nb = (bm["unseen_species_overcall"],
                      nb["unseen_species_overcall"])
        out.append(f"- unseen species: genus accuracy {_f(g_bm)} vs NB "
                   f"{_f(g_nb)} (target ≥ NB: {_mark(g_bm >= g_nb)}); "
                   f"species over-calls {_f(o_bm)} vs NB {_f(o_nb)} "
                   f"(target < NB: {_mark(o_bm < o_nb)})")
        r_nb = ms["naive-bayes"]["reads_per_second"]
        floor = 200 if region == "full ITS" else 500
        rows = [r for r in (sweep or {}).get("rows", [])
                if r["batch_size"] == "auto"]
        if rows:           # in-process, 4,000 reads: steadier than the CLI
            best = max(rows, key=lambda r: r["threads"])
            r_bm, how = best["reads_per_second"], (
                f"{best['threads']} threads, default batch, no start-up; "
                "throughput sweep below")
        else:
            r_bm, how = ms["barcodemamba"]["reads_per_second"], (
                f"{ms['barcodemamba']['threads']} threads, test queries")
        out.append(f"- throughput ({region}): barcodemamba {_f(r_bm, 0)} "
                   f"reads/s ({how}; target ≥ {floor}: "
                   f"{_mark(r_bm >= floor)}) vs classify-sklearn "
                   f"{_f(r_nb, 0)} reads/s on 1 thread, its default (target:"
                   f" within 2×: {_mark(2 * r_bm >= r_nb)})")
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


def headline(results: dict) -> str:
    out = []
    for name, ds in results["datasets"].items():
        out += [f"\n{name}", *method_table(ds)]
    return "\n".join(out)


def write_report(results: dict, report_dir: str) -> str:
    img_dir = os.path.join(report_dir, "images")
    pngs = plots(results, img_dir)
    sweeps = results.get("sweeps") or {}
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
          "- " + ", ".join(f"{k} {v}" for k, v in vers.items()),
          f"- q2-barcodemamba commit {git_commit()}", "",
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
    L += ["", "## Headline", "",
          "Percent of test queries; each method at its own default "
          "confidence; best of each column in bold (over-calls: lowest). "
          "Definitions, timings and per-rank accuracy below.", "",
          *headline_table(results),
          "", "## Scores", "",
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
        tg = targets(ds, region(name), sweeps.get(name))
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
    probes = {n: ds["knn_probe"] for n, ds in results["datasets"].items()
              if ds.get("knn_probe")}
    if probes:
        L += ["## Experiment: nearest neighbours over the embeddings", "",
              "Would a k-NN vote over the fine-tuned network's embeddings "
              "help the sparse long tail? `benchmarks/knn_probe.py` embeds "
              "reference reads and queries with the default-preset "
              "classifier (masked mean of the last hidden states, cosine "
              "similarity), mixes the k nearest neighbours' lineage votes "
              "(weights exp((sim − best)/τ)) into the network's lineage "
              "probabilities with weight α, and walks the tree as "
              "`classify` does. α, k ∈ {1, 5, 20}, τ and the threshold are "
              "chosen on the validation queries; test scores below.", "",
              "| data set | variant | α / k / τ / threshold | right call | "
              "seen: species | unseen sp.: genus | unseen sp.: species "
              "over-call | unseen gen.: family |", "|---" * 8 + "|"]
        for name, pr in probes.items():
            for key, label in (("network_only", "network alone"),
                               ("knn_only", "neighbours alone"),
                               ("mixed", "mixed")):
                r = pr[key]
                t = r["test"]
                L.append(
                    f"| {name} | {label} | {r['alpha']:g} / {r['k']} / "
                    f"{r['tau']:g} / {r['threshold']:g} | "
                    + " | ".join(_f(t[k]) for k in (
                        "right_call", "seen_species_accuracy",
                        "unseen_species_genus_accuracy",
                        "unseen_species_overcall",
                        "unseen_genus_family_accuracy")) + " |")
        L.append("")
    if sweeps:
        L += ["## Throughput vs batch size and threads", "",
              "barcodemamba (default preset), reads sampled with "
              "replacement from each data set's queries, in-process core API "
              "(`TaxonomicClassifier.predict`, i.e. cleaning, orientation "
              "check, tokenising, network and lineage walk; no start-up), "
              "CPU. *auto* is classify's default: on a CPU, length-sorted "
              f"batches of at most {CPU_BATCH_TOKENS:,} padded tokens (and "
              f"{CPU_MAX_BATCH} reads).", "",
              "| data set | reads | threads | batch size | reads/s |",
              "|---|---|---|---|---|"]
        for name, sw in sweeps.items():
            L += [f"| {region(name)} | {sw['n_reads']} | {r['threads']} | "
                  f"{r['batch_size']} | {_f(r['reads_per_second'], 0)} |"
                  for r in sw["rows"]]
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
    disc = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "discussion.md")
    if mode == "full" and os.path.exists(disc):
        with open(disc, encoding="utf-8") as fh:
            L += [fh.read().strip(), ""]
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
    text = "\n".join(L) + "\n"
    if os.path.exists(path):
        # keep the sections other scripts write (benchmarks/regions.py,
        # benchmarks/scale.py): <!-- name:start --> ... <!-- name:end -->
        with open(path, encoding="utf-8") as fh:
            old = fh.read()
        for m in re.finditer(r"<!-- ([a-z_-]+):start -->.*?"
                             r"<!-- \1:end -->", old, flags=re.S):
            text += "\n" + m.group(0) + "\n"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path
