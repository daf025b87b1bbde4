"""The machine, package versions and commit that a benchmark report
states (:mod:`.report`)."""
import os
import platform
import subprocess


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
