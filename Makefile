# Every target creates or refreshes the local virtual environment first, so a fresh clone needs
# nothing but Python >= 3.11 and make.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv demo test lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "doeff needs Python >= 3.11; set PYTHON=python3.11 (or newer)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -e '.[dev,dashboard,postgres,bench,numpy,pandas,pydantic,dask,otel]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	@$(PY) -m doeff demo --db $(VENV)/demo.db

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check doeff tests benchmarks
	$(VENV)/bin/mypy --strict doeff tests

bench: $(STAMP)
	@$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
