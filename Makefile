# make bench [JOB=digits_dense] | make test | make test-all | make lint | make setup
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
JOB ?= digits_dense
STAMP := $(VENV)/.installed

.PHONY: setup bench report test test-all lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

bench: $(STAMP)
	$(BIN)/harness run $(JOB)
	$(BIN)/harness report $(JOB)

report: $(STAMP)
	$(BIN)/harness report $(JOB)

# make test: everything but the `slow` and `slurm` tests (a few minutes on 2 cores);
# make test-all: every test, the Slurm ones on a real one-node cluster when Slurm is installed (what CI runs)
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not slurm"

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check harness tests bench

clean:
	rm -rf $(VENV) runs reports/*.png
