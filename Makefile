# Two commands do all set-up: `make demo` (the headline experiment) and
# `make test` (the test suite). Both create/update .venv first.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.ftkit-setup-done

.PHONY: setup demo test bench lab clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml requirements-nodeps.txt scripts/setup.sh
	bash scripts/setup.sh $(VENV) $(PYTHON)
	touch $@

demo: setup
	$(BIN)/ftkit info
	$(BIN)/ftkit demo

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python bench/bench_lr_finder.py

lab: setup
	$(BIN)/jupyter lab notebooks/

clean-venv:
	rm -rf $(VENV)
