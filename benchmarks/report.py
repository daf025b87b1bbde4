"""docs/benchmarks.md and the bench-*.png plots from results.json."""
import math
import os
import re
import time

from q2_barcodemamba.core.classifier import CPU_BATCH_TOKENS, CPU_MAX_BATCH

from .methods import MIN_TIMED_SECONDS
from .metrics import RANKS
from .plots import plots, region
from .provenance import machine_lines

IMPORT_COMMANDS = """\
qiime tools import --type 'FeatureData[Sequence]' --input-path split/reference.fasta --output-path qza/reference.qza
qiime tools import --type 'FeatureData[Taxonomy]' --input-path split/reference-taxonomy.tsv --output-path qza/reference-taxonomy.qza
qiime tools import --type 'FeatureData[Sequence]' --input-path split/test.fasta --output-path qza/test.qza
qiime tools import --type 'FeatureData[Sequence]' --input-path qza/one.fasta --output-path qza/one.qza"""


def _known(x) -> bool:
    """A measured number: not None, not NaN."""
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _f(x, digits=1):
    return f"{x:,.{digits}f}" if _known(x) else "–"


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
    if any(math.isnan(m["reads_per_second"]) for m in ds["methods"].values()):
        lines += ["", "reads/s: test queries / (classify seconds - one-read "
                  "seconds); – where that difference was under "
                  f"{MIN_TIMED_SECONDS:.0f} s, too short to time beside the "
                  "start-up's run-to-run jitter (~1 s)."]
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


def _mark_rate(rate, floor=None, peer=None) -> str:
    """:func:`_mark` of a reads/s target (``rate`` >= ``floor``, or within
    2x of ``peer``); "not timed" where a rate was not measured (the CLI
    run had under 2 s of work beyond start-up)."""
    if not _known(rate) or (floor is None and not _known(peer)):
        return "not timed in this run"
    return _mark(rate >= floor if floor is not None else 2 * rate >= peer)


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
                   f"{_mark_rate(r_bm, floor)}) vs classify-sklearn "
                   f"{_f(r_nb, 0)} reads/s on 1 thread, its default (target:"
                   f" within 2×: {_mark_rate(r_bm, None, r_nb)})")
    return out


def headline(results: dict) -> str:
    out = []
    for name, ds in results["datasets"].items():
        out += [f"\n{name}", *method_table(ds)]
    return "\n".join(out)


def write_report(results: dict, report_dir: str) -> str:
    img_dir = os.path.join(report_dir, "images")
    pngs = plots(results, img_dir)
    sweeps = results.get("sweeps") or {}
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
    L += ["", "## Machine and versions", "", *machine_lines(results), "",
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
        # a run shorter than the start-up's jitter gives a negative or
        # meaningless time: shown as "–" (its peak RSS still counts)
        def secs(r):
            t = r["seconds_without_startup"]
            return t if _known(t) and _known(r.get("reads_per_second")) \
                else None
        L += [f"| {r['reads']:,} | {_f(secs(r))} | "
              f"{_f(1000 * secs(r) / r['reads'] if secs(r) else None, 2)}"
              f" | {_f(r['reads_per_second'], 0)} | "
              f"{_f(r['peak_rss_mib'], 0)} |" for r in rows]
        L += ["", "reads/s and seconds: – where the run was too short to "
              "time beside the start-up's run-to-run jitter."]
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
