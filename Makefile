# Two entry points: `make quickstart` (set up, fetch data, run the main job) and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: quickstart test data lint clean bench-deps

quickstart: $(STAMP) data
	$(PY) -m robustlab run examples/quickstart.toml

# The study's browser tests need Flask, Playwright and Debian's Chromium (Playwright's own browser
# download is not used); the Slurm executor's test needs submitit (its local executor); the APGD
# trajectory test compares with the original AutoAttack (pyautoattack, test/bench only). If an
# install fails those tests skip and say why, and make test goes on.
test: $(STAMP) data
	$(PY) -m pip install -q -e '.[study,browser,slurm]' pyautoattack==0.2.0 || true
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 || \
	  echo "chromium could not be installed: the study browser tests will skip"; fi
	$(PY) -m pytest -rs

data: $(STAMP)
	bash scripts/ensure-fashion-mnist.sh $(PY)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

# The CPU wheel of torch 2.13.0 is found locally on the project machines; elsewhere pip's
# ordinary index decides. Installing torch first stops the package's `torch>=2.1` pulling a CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(PY) -m pip install -q torch==2.13.0 || $(PY) -m pip install -q torch
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Bench-only: the original AutoAttack for bench/autoattack_vs_original.py. Pure PyTorch, no
# dependencies of its own (so no torchvision); never a runtime dependency of robustlab.
bench-deps: $(STAMP)
	$(PY) -m pip install -q pyautoattack==0.2.0

clean:
	rm -rf $(VENV) build src/*.egg-info
