# The two commands: `make repro` and `make test`. Each bootstraps everything on a machine with
# only python3 (3.11+), pip and make: a pinned uv in .tools/, then .venv/ exactly as uv.lock says.

PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv

# No telemetry from DVC or MLflow; uv may not fetch interpreters (only the package index).
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export UV_PYTHON_DOWNLOADS := never

.PHONY: setup repro test clean

$(UV):
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target .tools uv==$(UV_VERSION)

# --compile-bytecode: every stage is a fresh process; without .pyc files (PYTHONDONTWRITEBYTECODE
# is set on some machines) each one recompiles torch, torchvision and mlflow: about 10 s apiece.
$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --compile-bytecode
	@touch $@

setup: $(VENV)/.synced

repro: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc repro
	@echo; cat results/table.md

test: setup
	$(VENV)/bin/python -m pytest

clean:
	rm -rf .tools $(VENV)
