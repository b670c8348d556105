# gpu-runbook: every entry point. `make serve` and `make test` work on a fresh clone (they build .venv).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Wheelhouse target (for an air-gapped GPU host): override to match that host.
WHEEL_PYTHON ?= 3.12
WHEEL_PLATFORMS ?= manylinux_2_28_x86_64 manylinux2014_x86_64
WHEELHOUSE ?= wheelhouse
PYTEST_ARGS ?=

.PHONY: serve build test lint test-gpu wheelhouse error-index clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "the site tools need Python >= 3.11 (set PYTHON=python3.11 or newer)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# One stamp per extras set, redone when pyproject.toml changes.
$(VENV)/.site-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[site]'
	@touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[site,notebook,test]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 > /dev/null
	@touch $@

## serve: build the runbook site and serve it on http://127.0.0.1:8000/
serve: $(VENV)/.site-installed
	$(BIN)/mkdocs serve -a 127.0.0.1:8000

## build: build the site into site/ (strict: any warning fails)
build: $(VENV)/.site-installed
	$(BIN)/mkdocs build --strict

## lint: ruff and the Python 3.9 floor of the runtime code
lint: $(VENV)/.test-installed
	$(BIN)/ruff check snippets tests docs/hooks notebooks
	$(BIN)/vermin --no-tips --violations -t=3.9- --eval-annotations snippets/gpu_runbook

## test: everything CI runs: ruff + vermin, unit, scenarios, CLI, notebooks (papermill + nbval), site build, browser
test: $(VENV)/.test-installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## test-gpu: on a host with an NVIDIA GPU: GPU tests + notebooks on the live host, recorded in tests/gpu/runs/
test-gpu:
	bash tests/gpu/run-gpu-tests.sh

## wheelhouse: every wheel the GPU tests need, for a host with no internet
# aiohttp by name: papermill needs it on Python 3.12 only, and pip download judges `python_version`
# markers by the Python running pip, not by --python-version, so building on 3.11 would leave it out.
wheelhouse:
	rm -rf $(WHEELHOUSE) && mkdir -p $(WHEELHOUSE)
	$(PYTHON) -m pip wheel --no-deps -w $(WHEELHOUSE) .
	$(PYTHON) -m pip download -d $(WHEELHOUSE) --only-binary=:all: --python-version $(WHEEL_PYTHON) \
	  $(foreach p,$(WHEEL_PLATFORMS),--platform $(p)) --platform any \
	  nvidia-ml-py tomli pytest papermill nbval ipykernel nbformat aiohttp
	@echo "wheelhouse: $$(ls $(WHEELHOUSE) | wc -l) wheels in $(WHEELHOUSE)/"

## error-index: regenerate the `explain` index from the pages' errors: front matter
error-index: $(VENV)/.test-installed
	$(BIN)/python tests/tools/gen_error_index.py

clean:
	rm -rf site .cache .pytest_cache
