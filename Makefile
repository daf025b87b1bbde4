# q2-barcodemamba: two commands on a fresh Debian 12 machine (root or sudo).
#   make demo   install everything, fit a classifier on bundled real ITS data,
#               classify reads, write a taxa barplot       (see README.md)
#   make test   install everything, run the whole test suite (tests/ and
#               the package's q2_barcodemamba/tests)
# Both are idempotent: steps already done are skipped via stamp files.

VENV      ?= .venv
PY        := $(VENV)/bin/python
QIIME     := $(VENV)/bin/qiime
# Lean CPU build of PyTorch; set TORCH=torch for pip's default (CUDA) build.
TORCH     ?= torch==2.13.0+cpu
DEMO_DIR  ?= demo-output
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PKGS  := qiime q2cli q2-types q2-feature-classifier q2-taxa \
             q2-feature-table q2-metadata python3-venv python3-pytest \
             chromium vsearch ncbi-blast+ time
STAMPS    := $(VENV)/.stamps

.PHONY: demo test install clean-demo bench bench-quick bench-regions

demo: install
	PYTHONUNBUFFERED=1 $(PY) scripts/demo.py --qiime $(QIIME) --output-dir $(DEMO_DIR)

# the installed package's own tests (q2_barcodemamba/tests, what the conda
# recipe runs) and those that need this source checkout (tests/)
test: install $(STAMPS)/planemo
	$(PY) -m pytest -ra tests --pyargs q2_barcodemamba

install: $(STAMPS)/package

# re-checked when the Makefile (its package list) changes
$(STAMPS)/apt: Makefile
	@if dpkg-query -W -f='$${Status}\n' $(APT_PKGS) 2>/dev/null | grep -qv 'install ok installed' \
	    || ! dpkg-query -W $(APT_PKGS) >/dev/null 2>&1; then \
	  echo ">> installing QIIME 2 2022.11 from Debian packages"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PKGS); \
	fi
	/usr/bin/python3 -m venv --system-site-packages $(VENV)
	mkdir -p $(STAMPS) && touch $@

$(STAMPS)/deps: $(STAMPS)/apt constraints.txt
	$(PY) -m pip install -q -c constraints.txt "$(TORCH)" \
	  || $(PY) -m pip install -q -c constraints.txt torch
	$(PY) -m pip install -q -c constraints.txt "tokenizers>=0.15" "safetensors>=0.4"
	touch $@

# q2cli caches action signatures: refresh it when they may have changed.
$(STAMPS)/package: $(STAMPS)/deps setup.py scripts/qiime-wrapper \
                   $(wildcard q2_barcodemamba/*.py)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	install -m 755 scripts/qiime-wrapper $(QIIME)
	$(QIIME) dev refresh-cache >/dev/null
	touch $@

# planemo lints the Galaxy wrappers (galaxy/), Cheetah (ct3) renders their
# commands for the tests; own venv, without system site packages, because
# planemo needs click>=8.2, which breaks q2cli.
$(STAMPS)/planemo: $(STAMPS)/apt
	/usr/bin/python3 -m venv $(VENV)/planemo
	$(VENV)/planemo/bin/python -m pip install -q "planemo==0.75.47" \
	  "galaxy-tool-util==26.1.2" "ct3==3.4.0.post5"
	touch $@

# benchmarks against classify-sklearn, vsearch, BLAST (issue 5): --full writes
# docs/benchmarks.md (hours on CPU); --quick is the < 15 min smoke run
bench: install
	PYTHONUNBUFFERED=1 $(PY) -m benchmarks.run --full

bench-quick: install
	PYTHONUNBUFFERED=1 $(PY) -m benchmarks.run --quick

# amplicons and long reads from a full-ITS reference (docs/benchmarks.md)
bench-regions: install
	PYTHONUNBUFFERED=1 $(PY) -m benchmarks.regions

clean-demo:
	rm -rf $(DEMO_DIR)
