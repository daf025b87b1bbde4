"""The classifiers compared, as QIIME 2 CLI commands, and how each is run.

Every method sees the same reference (``qza/reference.qza`` +
``qza/reference-taxonomy.qza``) and the same queries. Parameters are the
actions' defaults except where stated (vsearch top hit: ``--p-maxaccepts
1``; barcodemamba: ``--p-preset`` for non-default presets and
``--p-epochs`` in quick mode). Threads are the defaults too:
classify-sklearn ``n_jobs=1``, vsearch ``threads=1``, BLAST 1 thread,
barcodemamba all cores (``n_threads=0``).

Classification throughput excludes process start-up: each classify
command is also run on a single read, and that time is subtracted; when
less than ``MIN_TIMED_SECONDS`` remain (``--quick``'s 125 queries) the
rate is not reported (NaN, "–" in the tables): start-up varies by ~1 s
between runs, so the difference could even be negative. The in-process
throughput sweep (:mod:`.speed`) times the classifier without start-up.
"""
import json
import os
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from .provenance import stamp
from .qiime_cli import Runner, command_line, read_classification, \
    size_mib

REF, TAX = "qza/reference.qza", "qza/reference-taxonomy.qza"
MIN_TIMED_SECONDS = 2.0


@dataclass
class Method:
    name: str
    label: str                     # shown in tables
    classify: Callable[[str, str, str], List[str]]  # (query, out, dir)
    fit: Optional[Callable[[str], List[str]]] = None  # (dir) -> args
    threads: str = "1"
    model_files: Callable[[str], List[str]] = field(
        default=lambda d: [REF, TAX])


def _nb_fit(d):
    return ["feature-classifier", "fit-classifier-naive-bayes",
            "--i-reference-reads", REF, "--i-reference-taxonomy", TAX,
            "--o-classifier", f"{d}/classifier.qza"]


def _nb_classify(q, out, d):
    return ["feature-classifier", "classify-sklearn", "--i-reads", q,
            "--i-classifier", f"{d}/classifier.qza",
            "--o-classification", out]


def _consensus(action, extra=()):
    def args(q, out, d):
        return (["feature-classifier", action, "--i-query", q,
                 "--i-reference-reads", REF, "--i-reference-taxonomy", TAX,
                 *extra, "--o-classification", out,
                 "--o-search-results", out.replace(".qza", "-hits.qza")])
    return args


def _bm_fit(preset, epochs, more):
    def args(d):
        extra = (["--p-preset", preset] if preset else []) + (
            ["--p-epochs", str(epochs)] if epochs else []) + list(more)
        return ["barcodemamba", "fit-classifier", "--i-reference-reads",
                REF, "--i-reference-taxonomy", TAX, *extra,
                "--o-classifier", f"{d}/classifier.qza"]
    return args


def _bm_classify(q, out, d):
    return ["barcodemamba", "classify", "--i-reads", q, "--i-classifier",
            f"{d}/classifier.qza", "--o-classification", out]


def _own_model(d):
    return [f"{d}/classifier.qza"]


def method_list(presets: List[str], epochs: Optional[int],
                n_cpus: int, fit_args: List[str] = ()) -> List[Method]:
    """The compared methods; ``presets`` adds ``barcodemamba-<preset>``
    runs beside the default-preset ``barcodemamba``; ``fit_args`` are
    passed to every barcodemamba fit-classifier."""
    out = [
        Method("naive-bayes", "NB classify-sklearn", _nb_classify, _nb_fit,
               model_files=_own_model),
        Method("vsearch", "vsearch consensus",
               _consensus("classify-consensus-vsearch")),
        Method("vsearch-top-hit", "vsearch top hit",
               _consensus("classify-consensus-vsearch",
                          ("--p-maxaccepts", "1"))),
        Method("blast", "BLAST consensus",
               _consensus("classify-consensus-blast")),
        Method("barcodemamba", "barcodemamba (default preset)",
               _bm_classify, _bm_fit(None, epochs, fit_args),
               threads=str(n_cpus), model_files=_own_model),
    ]
    for p in presets:
        out.append(Method(f"barcodemamba-{p}", f"barcodemamba {p}",
                          _bm_classify, _bm_fit(p, epochs, fit_args),
                          threads=str(n_cpus), model_files=_own_model))
    return out


def run_method(m: Method, ds_dir: str, run: Runner, evaluate) -> dict:
    """Fit (if the method has a fit step), classify one read and the test
    queries, score them; result.json in the method's directory makes a
    later run skip all of it (resumable), fit.json the fit alone."""
    d = f"methods/{m.name}"
    steps = ([("fit", m.fit(d))] if m.fit is not None else []) + [
        ("one_read", m.classify("qza/one.qza", f"{d}/one.qza", d)),
        ("classify", m.classify("qza/test.qza", f"{d}/test.qza", d))]
    commands = [command_line(args) for _, args in steps]
    result_path = os.path.join(ds_dir, d, "result.json")
    if os.path.exists(result_path):
        with open(result_path) as fh:
            res = json.load(fh)
        if res["commands"] != commands:
            raise SystemExit(
                f"{os.path.join(ds_dir, d)} holds results of other commands "
                f"({res['commands']}); delete it or use another --out.")
        return res
    os.makedirs(os.path.join(ds_dir, d), exist_ok=True)
    res = {"method": m.name, "label": m.label, "threads": m.threads}
    fit_json = os.path.join(ds_dir, d, "fit.json")
    for key, args in steps:
        if key == "fit" and os.path.exists(fit_json):
            # a fitted model outlives a change of the classify step
            with open(fit_json) as fh:
                done = json.load(fh)
            if done["command"] == command_line(args) and os.path.exists(
                    os.path.join(ds_dir, d, "classifier.qza")):
                res[key] = done["stats"]
                # the fit keeps the stamp of the code that ran it (None:
                # a fit.json written before fits were stamped)
                res["fit_measured"] = done.get("measured")
                continue
        res[key] = run(*args)
        if key == "fit":
            res["fit_measured"] = stamp()
            with open(fit_json, "w") as fh:
                json.dump({"command": command_line(args),
                           "stats": res[key],
                           "measured": res["fit_measured"]}, fh, indent=1)
    res["commands"] = commands
    calls = read_classification(os.path.join(ds_dir, d, "test.qza"))
    with open(os.path.join(ds_dir, d, "test-classification.tsv"), "w",
              encoding="utf-8") as fh:
        fh.write("Feature ID\tTaxon\tConfidence\n")
        fh.writelines(f"{i}\t{t}\t{c}\n" for i, (t, c) in calls.items())
    metrics = evaluate({i: t for i, (t, _) in calls.items()})
    n = metrics["n_queries"]
    net = res["classify"]["seconds"] - res["one_read"]["seconds"]
    res.update({
        "metrics": metrics,
        "model_mib": size_mib(*[os.path.join(ds_dir, p)
                                for p in m.model_files(d)]),
        "startup_seconds": res["one_read"]["seconds"],
        # below MIN_TIMED_SECONDS of work the start-up's jitter (~1 s
        # between CLI runs) decides the difference: no rate
        "reads_per_second": (n / net if net >= MIN_TIMED_SECONDS
                             else float("nan")),
        "reads_per_second_with_startup": n / res["classify"]["seconds"],
        "measured": stamp(),
    })
    with open(result_path, "w") as fh:
        json.dump(res, fh, indent=1)
    return res
