"""The machine, package versions and commit that a benchmark report
states (:mod:`.report`)."""
import os
import platform
import subprocess
import time
from collections import defaultdict


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


def stamp() -> dict:
    """What a step's result file records of the code and time that
    measured it (the report states it, as results are reused by later
    invocations)."""
    return {"commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M")}


KINDS = {"method runs": "method run",
         "fits (of those runs)": "fit (of those runs)",
         "nearest-neighbour probes": "nearest-neighbour probe",
         "throughput sweeps": "throughput sweep",
         "scaling runs": "scaling run"}


def measured_at(results: dict) -> str:
    """One line for the report: the commits (and dates) at which the
    results it shows were measured, per kind of step; steps written before
    the harness recorded it (2026-12-04) count as "not recorded"."""
    steps = []
    for ds in results.get("datasets", {}).values():
        steps += [("method runs", r.get("measured"))
                  for r in ds.get("methods", {}).values()]
        # a run may reuse an earlier fit (fit.json): where it says which
        # code fitted, that is counted too
        steps += [("fits (of those runs)", r["fit_measured"])
                  for r in ds.get("methods", {}).values()
                  if "fit_measured" in r]
        if ds.get("knn_probe"):
            steps.append(("nearest-neighbour probes",
                          ds["knn_probe"].get("measured")))
    steps += [("throughput sweeps", s.get("measured"))
              for s in (results.get("sweeps") or {}).values()]
    steps += [("scaling runs", r.get("measured"))
              for r in (results.get("scaling") or {}).get("rows", [])]
    groups = defaultdict(lambda: defaultdict(int))
    dates = defaultdict(set)
    for kind, st in steps:
        key = st["commit"] if st else None
        groups[key][kind] += 1
        if st:
            dates[key].add(st["date"])
    parts = []
    for key in sorted(groups, key=lambda k: (k is None, min(dates[k])
                                             if k in dates else "")):
        what = ", ".join(
            f"{n} {kind if n > 1 else KINDS[kind]}" for kind in KINDS
            for n in [groups[key][kind]] if n)
        if key is None:
            parts.append(f"not recorded (written before the harness "
                         f"recorded it): {what}")
        else:
            days = sorted({d[:10] for d in dates[key]})
            parts.append(f"commit {key} ({', '.join(days)}): {what}")
    return "; ".join(parts) if parts else "no steps"


def machine_lines(results: dict) -> list:
    """The report's "Machine and versions" list."""
    mach, vers = machine(), versions()
    return [f"- CPU: {mach['cpu']}, {mach['cores']} cores available; "
            f"{mach['memory']}; {mach['os']}",
            "- load average (1, 5, 15 min) at the end of this invocation: "
            + ", ".join(f"{x:.1f}" for x in results.get("loadavg", []))
            + " (other work on the machine slows every timing)",
            "- " + ", ".join(f"{k} {v}" for k, v in vers.items()),
            f"- q2-barcodemamba commit of this invocation {git_commit()}; "
            f"results measured at: {measured_at(results)}"]
