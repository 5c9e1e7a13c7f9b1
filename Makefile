# Two entry points for a fresh clone:
#   make demo   -> create .venv, install the CPU build of torch first (pinned), then advsec; run the demo
#   make test   -> the same environment plus dev tools; ruff + mypy + the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --disable-pip-version-check -q -c constraints.txt
OUT    ?= runs/demo

.PHONY: demo test lint bench clean venv dev

$(VENV)/.base: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) "torch==2.13.0"          # torch first, pinned: no CUDA packages are pulled
	$(PIP) -e .
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PIP) -e ".[dev]"
	$(PIP) --no-deps torchattacks   # torchattacks pins nothing useful; keep our torch
	touch $@

venv: $(VENV)/.base
dev: $(VENV)/.dev

demo: $(VENV)/.base
	$(VENV)/bin/advsec demo --out $(OUT) --force

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests $(wildcard bench)
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/python -m pytest -q

bench: $(VENV)/.dev
	$(VENV)/bin/python bench/load.py
	$(VENV)/bin/python bench/attacks.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
