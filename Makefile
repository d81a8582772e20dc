# The README's two commands: `make quick` and `make test`. Both create the
# virtual environment first when it is missing or older than the pins.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE_LINE := export SNAKEMAKE_PROFILE="$(CURDIR)/profiles/local"

.PHONY: venv quick test test-slurm lint format clean-venv

venv: $(STAMP)

$(STAMP): envs/requirements.txt pyproject.toml
	@$(BIN)/python -c "" 2>/dev/null || { rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r envs/requirements.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	@# A bare `snakemake TARGET` in the activated venv gets its cores here.
	@grep -qxF '$(PROFILE_LINE)' $(BIN)/activate || echo '$(PROFILE_LINE)' >> $(BIN)/activate
	touch $(STAMP)

quick: venv
	$(BIN)/snakemake --profile profiles/quick all
	$(BIN)/snakemake --profile profiles/quick --report results/report.html
	@echo
	@echo "Quick-scale results are under results/: tables in results/tables/,"
	@echo "figures in results/figures/, the report in results/report.html."

lint: venv
	$(BIN)/ruff check src workflow/scripts tests benchmarks
	$(BIN)/ruff format --check src workflow/scripts tests benchmarks
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint
	$(BIN)/snakemake --lint --profile profiles/quick

format: venv
	$(BIN)/ruff format src workflow/scripts tests benchmarks
	$(BIN)/ruff check --fix src workflow/scripts tests benchmarks
	$(BIN)/snakefmt Snakefile workflow/rules

test: lint
	@# pytest's exit 5 (no tests collected) is a failure here.
	$(BIN)/python -m pytest -q --durations=10 -m "not slurm"; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no tests ran"; exit 1; fi; exit $$rc

# The workflow through a real one-node Slurm (installs Slurm with apt; root).
test-slurm: venv
	$(BIN)/python -m pytest -q -m slurm -x

clean-venv:
	rm -rf $(VENV)
