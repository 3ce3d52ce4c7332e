# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine:
# they create the virtual environment (CPU torch wheel) and install the project.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup sysdeps demo test lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[qt,testing,slicer]"
	touch $(STAMP)

setup: $(STAMP)

# System libraries for Qt 6 / OpenGL under Xvfb (Debian). Skipped when already present.
sysdeps:
	@bash .ci/sysdeps

demo: setup sysdeps
	$(PY) -m napari_nfdp.demo --out results

test: setup sysdeps
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) results .pytest_cache
