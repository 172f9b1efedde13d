# The two commands: `make repro` and `make test`. Each bootstraps everything on a machine with
# only python3 (3.11+), pip and make: a pinned uv in .tools/, then .venv/ exactly as uv.lock says.

PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
FASHION_DEB := /usr/share/datasets/fashion-mnist

# No telemetry from DVC or MLflow; uv may not fetch interpreters (only the package index).
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export UV_PYTHON_DOWNLOADS := never

.PHONY: setup repro pull test test-slow docs system-packages clean fashion-data

$(UV):
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target .tools uv==$(UV_VERSION)

# --compile-bytecode: every stage is a fresh process; without .pyc files (PYTHONDONTWRITEBYTECODE
# is set on some machines) each one recompiles torch, torchvision and mlflow: about 10 s apiece.
#
# .synced holds the folder the venv was synced in. A venv from another folder (a checkout copied
# with cp -a, or moved) runs that folder's code: the editable install and every script's shebang
# are absolute paths. Then .synced is out of date whatever its time stamp, and the venv is rebuilt.
ifneq ($(shell cat $(VENV)/.synced 2>/dev/null),$(CURDIR))
.PHONY: $(VENV)/.synced
endif
$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	@if [ -d $(VENV) ] && [ "$$(cat $@ 2>/dev/null)" != "$(CURDIR)" ]; then \
	  echo "$(VENV) was synced for $$(cat $@ 2>/dev/null || echo 'another folder'), not $(CURDIR): rebuilding it"; \
	  rm -rf $(VENV); \
	fi
	$(UV) sync --frozen --compile-bytecode
	@echo "$(CURDIR)" > $@

setup: $(VENV)/.synced

repro: setup
	@$(VENV)/bin/prunelab check --params params.yaml  # before DVC expands dvc.yaml with it (a wrong type there is DVC's error, naming no key)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc repro
	@echo; cat results/table.md

# A clone that pulls instead of retraining: every output dvc.lock records comes from the DVC
# remote a run was pushed to (`dvc push --run-cache`); DVC then runs only what is missing there
# or changed since (README, "Pull instead of retraining").
pull: setup
	@$(VENV)/bin/dvc remote default >/dev/null 2>&1 || { \
	  echo "make pull: no default DVC remote; add the one your team pushes to, e.g."; \
	  echo "  .venv/bin/dvc remote add -d storage s3://<bucket>/prunelab   (or /shared/folder, ssh://host/path, gs://...)"; \
	  exit 2; }
	@$(VENV)/bin/prunelab check --params params.yaml
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc repro --pull
	@echo; cat results/table.md

test: setup system-packages
	$(VENV)/bin/python -m pytest

# The checks too long for `make test` (tests marked slow): CI runs them after it.
test-slow: setup system-packages
	$(VENV)/bin/python -m pytest -m slow

# The documentation site (mkdocs.yml, docs/) into site/, built offline and read from file:// (no web
# fonts; only the search box fetches a polyfill from unpkg there), and
# --strict: a broken link or a page missing from the navigation is an error. Open site/index.html.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict
	@echo "the site: $(CURDIR)/site/index.html"

# System packages some tests use: Debian's qemu-user (an emulated CPU: tests/test_numerics.py)
# and dataset-fashion-mnist (the real-data loader). Installed where this user can (apt-get, and
# root or password-less sudo); elsewhere those tests are skipped with a message naming them.
system-packages:
	@missing=""; \
	command -v qemu-x86_64 >/dev/null || missing="$$missing qemu-user"; \
	[ -f $(FASHION_DEB)/train-images-idx3-ubyte.gz ] || missing="$$missing dataset-fashion-mnist"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null && { [ "$$(id -u)" = 0 ] && SUDO= || { sudo -n true 2>/dev/null && SUDO=sudo; }; }; then \
	  echo "installing Debian's$$missing for the tests"; \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; } \
	    || echo "could not install$$missing: the tests that need them are skipped"; \
	else \
	  echo "not installed:$$missing (needs apt-get and root): the tests that need them are skipped"; \
	fi

# Fashion-MNIST for the real-data pipeline: Debian's package puts the four .gz idx files in
# /usr/share/datasets/fashion-mnist/ (prunelab.data.DEBIAN_FASHION_DIR), where the loader finds
# them without configuration. Installs with root or password-less sudo; otherwise says what to do.
fashion-data:
	@if [ -f $(FASHION_DEB)/train-images-idx3-ubyte.gz ]; then \
	  echo "Fashion-MNIST is installed in $(FASHION_DEB)/"; \
	elif command -v apt-get >/dev/null && { [ "$$(id -u)" = 0 ] && SUDO= || { sudo -n true 2>/dev/null && SUDO=sudo; }; }; then \
	  $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y dataset-fashion-mnist; \
	else \
	  echo "make fashion-data: cannot install Debian's dataset-fashion-mnist here (needs apt-get, and root or password-less sudo)."; \
	  echo "Provide Fashion-MNIST in one of three ways:"; \
	  echo "  1. sudo apt-get install dataset-fashion-mnist   (Debian/Ubuntu; read from $(FASHION_DEB)/)"; \
	  echo "  2. put train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"; \
	  echo "     (the release's files) in FashionMNIST/raw/ under the params' paths.data"; \
	  echo "  3. set data.download: true in the params: torchvision downloads them there"; \
	  exit 1; \
	fi

clean:
	rm -rf .tools $(VENV)
