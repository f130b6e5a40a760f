# Two entry points: `make quickstart` (set up, fetch data, run the main job) and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: quickstart test data lint clean bench-deps

quickstart: $(STAMP) data
	$(PY) -m robustlab run examples/quickstart.toml

test: $(STAMP) data
	$(PY) -m pytest

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

# Bench-only: torchattacks' own requirements pull torchvision, which it does not need to import.
bench-deps: $(STAMP)
	$(PY) -m pip install -q --no-deps torchattacks==3.5.1

clean:
	rm -rf $(VENV) build src/*.egg-info
