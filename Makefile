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

# Every benchmark (bench/run_all.py): bench/results/latest.{json,md} and the table printed.
# BENCH_QUICK=1 make bench: tiny sizes (a smoke test; writes quick.{json,md}). fastai runs in
# its own virtualenv beside our torch (bench/fastai_env.sh, --no-deps: no second torch).
bench: setup
	bash bench/fastai_env.sh $(VENV) .venv-fastai \
		|| echo "warning: could not make .venv-fastai; the fastai part will record the error" >&2
	$(BIN)/python -m bench.run_all

# JupyterLab on the lessons. overrides.json goes where this JupyterLab reads it
# (<venv>/share/jupyter/lab/settings); root (a container) needs --allow-root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: setup
	$(BIN)/python scripts/lab_settings.py
	$(BIN)/jupyter lab $(ROOT_FLAG) notebooks/

clean-venv:
	rm -rf $(VENV)
