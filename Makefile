# The two commands of the README: `make demo` and `make test`. Both build the venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CORES ?= all

.PHONY: demo test test-fast venv lint format docs clean

# the exact tested set (requirements.lock), then the package itself; `pip install .` instead takes the
# version ranges of pyproject.toml
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

REPORT ?= results/report.html

demo: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES)
	$(VENV)/bin/snakemake --report $(REPORT)
	@echo "Study report: $(abspath $(REPORT))"

# two pytest-xdist workers (TEST_JOBS), a test module per worker at a time (loadfile): a module's
# fixtures are built once, and test_scale's local SLURM runs on one worker only. (loadgroup with
# xdist_group marks groups nothing under pytest 9.2 + xdist 3.8: checked on a 6-test toy suite)
TEST_JOBS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile tests

# the working loop: every test that does not run the workflow (marked slow in tests/conftest.py)
test-fast: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile -m "not slow" tests

lint: $(STAMP)
	$(VENV)/bin/snakemake --lint
	$(VENV)/bin/snakefmt --check Snakefile workflow/rules
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# docs/options.md from the config schema (tests/test_cli.py checks it is current)
docs: $(STAMP)
	$(PY) -c "from qsmvbm.cli import options_markdown; print(options_markdown(), end='')" > docs/options.md

# rewrite the code in the house style (ruff: Python; snakefmt: Snakemake files)
format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	$(VENV)/bin/snakefmt Snakefile workflow/rules

clean:
	rm -rf results .snakemake
