# gpu-runbook: every entry point. `make serve` and `make test` work on a fresh clone (they build .venv).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Wheelhouse target (for an air-gapped GPU host): override to match that host.
WHEEL_PYTHON ?= 3.12
WHEEL_PLATFORMS ?= manylinux_2_28_x86_64 manylinux2014_x86_64
WHEELHOUSE ?= wheelhouse
PYTEST_ARGS ?=

.PHONY: serve build test lint test-gpu wheelhouse error-index clean pyz image

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "the site tools need Python >= 3.11 (set PYTHON=python3.11 or newer)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# One stamp per extras set, redone when pyproject.toml changes.
# The site build executes the notebooks (docs/hooks/notebooks.py), so the site needs a registered kernel too.
$(VENV)/.site-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[site]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 > /dev/null
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

## test: everything CI runs: ruff + vermin, unit, scenarios, CLI, notebooks (papermill + nbval), site build, browser,
## and the single-file doctor built by `make pyz`, run under every Python 3.9+ found here
test: $(VENV)/.test-installed pyz
	GPU_RUNBOOK_PYZ=$(CURDIR)/gpu-runbook.pyz $(BIN)/python -m pytest $(PYTEST_ARGS)

## pyz: gpu-runbook.pyz, the doctor as one file: `python3 gpu-runbook.pyz check` with nothing installed (3.9-3.13)
# Its .pyc files are compiled by PYZ_PYTHON, the Python it will mostly run under; others compile the source.
PYZ_PYTHON ?= $(PYTHON)
pyz: gpu-runbook.pyz

## image: the node-problem-detector DaemonSet image (NPD + python3 + the pyz): make image IMAGE=<registry>/<name>:<tag>
# ENGINE=docker works too; NPD_IMAGE overrides the base (packaging/Containerfile names the default).
ENGINE ?= podman
IMAGE ?=
# The image's pyz is always rebuilt, for PYZ_PYTHON (the image's python3): one left by `make test` may carry
# another Python's bytecode.
image:
	@test -n "$(IMAGE)" || { echo "image: set IMAGE=<registry>/<name>:<tag>" >&2; exit 2; }
	rm -rf build/image && mkdir -p build/image
	$(PYTHON) packaging/build_pyz.py -o build/image/gpu-runbook.pyz --compile-with "$$(command -v $(PYZ_PYTHON))"
	$(ENGINE) build -f packaging/Containerfile $(if $(NPD_IMAGE),--build-arg NPD_IMAGE=$(NPD_IMAGE)) -t $(IMAGE) build/image

gpu-runbook.pyz: packaging/build_pyz.py $(shell find snippets/gpu_runbook -name '*.py' -o -name '*.json' 2>/dev/null)
	$(PYTHON) packaging/build_pyz.py -o $@ --compile-with "$$(command -v $(PYZ_PYTHON))"

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
	rm -rf site .cache .pytest_cache gpu-runbook.pyz
