"""Run QIIME 2 CLI commands under GNU time and read their outputs.

Every command is timed by wall clock and by ``/usr/bin/time -v`` (peak
resident set size of the largest process, QIIME's Python or the aligner it
starts). The command line, with paths relative to the dataset directory,
is kept for the report.
"""
import os
import re
import shlex
import shutil
import subprocess
import time
import zipfile
from typing import Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GNU_TIME = "/usr/bin/time"


def find_qiime() -> str:
    """The repository's QIIME 2 (``.venv/bin/qiime``), else ``qiime``."""
    venv = os.path.join(REPO, ".venv", "bin", "qiime")
    if os.path.exists(venv):
        return venv
    found = shutil.which("qiime")
    if not found:
        raise SystemExit("No QIIME 2 command line found (.venv/bin/qiime or "
                         "qiime on PATH): run `make install` first.")
    return found


def check_tools() -> None:
    """Fail early, naming the Debian package, when a tool is missing."""
    need = {"vsearch": "vsearch", "blastn": "ncbi-blast+",
            GNU_TIME: "time"}
    missing = [f"{tool} (apt-get install {pkg})" for tool, pkg in need.items()
               if not shutil.which(tool)]
    if missing:
        raise SystemExit("Missing tools for the benchmark: "
                         + ", ".join(missing) + ". `make bench` installs "
                         "them.")


def command_line(args) -> str:
    """``qiime ...`` as one shell-ready line (for the report)."""
    return "qiime " + " ".join(shlex.quote(a) for a in args)


class Runner:
    """Runs ``qiime`` sub-commands in ``cwd``; records what it ran."""

    def __init__(self, qiime: str, cwd: str, log: List[str]):
        self.qiime, self.cwd, self.log = qiime, cwd, log

    def __call__(self, *args: str) -> Dict[str, float]:
        """Run ``qiime *args``; return {"seconds", "peak_rss_mib"}.
        Raises RuntimeError with the tail of stderr on failure."""
        self.log.append(command_line(args))
        stats = os.path.join(self.cwd, ".time-v.txt")
        cmd = [GNU_TIME, "-v", "-o", stats, self.qiime, *args]
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=self.cwd, capture_output=True,
                              text=True)
        seconds = time.perf_counter() - t
        if proc.returncode != 0:
            raise RuntimeError(
                f"`qiime {' '.join(args)}` failed in {self.cwd} (exit "
                f"{proc.returncode}):\n{proc.stdout[-3000:]}\n"
                f"{proc.stderr[-3000:]}")
        with open(stats) as fh:
            text = fh.read()
        os.remove(stats)
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
        cpu = sum(float(x) for x in re.findall(
            r"(?:User|System) time \(seconds\): ([\d.]+)", text))
        return {"seconds": seconds, "cpu_seconds": cpu,
                "peak_rss_mib": int(m.group(1)) / 1024 if m else float("nan")}

    def import_fasta(self, src: str, dst: str) -> None:
        if not os.path.exists(os.path.join(self.cwd, dst)):
            self("tools", "import", "--type", "FeatureData[Sequence]",
                 "--input-path", src, "--output-path", dst)

    def import_taxonomy(self, src: str, dst: str) -> None:
        if not os.path.exists(os.path.join(self.cwd, dst)):
            self("tools", "import", "--type", "FeatureData[Taxonomy]",
                 "--input-path", src, "--output-path", dst)


def read_classification(qza: str) -> Dict[str, tuple]:
    """{feature id: (taxon, confidence)} from a FeatureData[Taxonomy] .qza
    (read straight from the zip, without a QIIME start-up)."""
    with zipfile.ZipFile(qza) as zf:
        name = next(n for n in zf.namelist()
                    if n.endswith("/data/taxonomy.tsv"))
        lines = zf.read(name).decode().splitlines()
    out = {}
    for line in lines[1:]:
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        conf = parts[2] if len(parts) > 2 else ""
        try:
            conf = float(conf)
        except ValueError:
            conf = float("nan")
        out[parts[0]] = (parts[1], conf)
    return out


def size_mib(*paths: str) -> float:
    return sum(os.path.getsize(p) for p in paths) / 2 ** 20
