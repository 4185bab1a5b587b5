# Super Server Platform — the two commands a newcomer needs:
#   make demo   the main job on this machine: a real LXD, the example requests applied
#   make test   every test and lint, installing what it needs on a fresh Debian/Ubuntu
#   make unit   the fast suite alone (`pytest`): feedback in about a minute
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit venv lxd browser clean lock

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q --upgrade pip
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# A real LXD daemon with the test images and Common-Server (idempotent; see runner/dev-lxd.sh).
lxd:
	bash runner/dev-lxd.sh up

# Headless Chromium and its driver from Debian, for the status page's browser test, and a
# Chinese font so its screenshot shows the page's Chinese labels as a member's phone does.
BROWSER_PACKAGES := chromium chromium-driver fonts-wqy-zenhei
browser:
	dpkg -s $(BROWSER_PACKAGES) >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_PACKAGES); }

# The sample policy's share and shared server, as the lab's real host has them.
demo: venv lxd
	mkdir -p /home/user/share
	lxc info Common-Server | grep -q '^Status: RUNNING' || lxc start Common-Server
	$(BIN)/ssp validate --all
	$(BIN)/ssp host init
	$(BIN)/ssp apply --no-comment || echo "demo: some requests were not applied on this machine (see above)"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/ssp schema --check
	$(BIN)/ssp validate --all
	shellcheck runner/*.sh

# The hashed lock the GPU host installs from (apply.yml, maintenance.yml): the runtime
# dependencies and the build backend, every version pinned, every file hashed. Run after
# changing dependencies in pyproject.toml; tests/test_lockfile.py checks the two agree.
LOCK_FLAGS := --quiet --generate-hashes --allow-unsafe --strip-extras --build-deps-for wheel \
	--no-emit-index-url --no-emit-find-links --index-url https://pypi.org/simple
lock: venv
	PIP_CONSTRAINT= $(BIN)/pip-compile $(LOCK_FLAGS) --output-file requirements.lock pyproject.toml

# The fast suite: no LXD, no cluster, no browser, no network; about a minute on two cores.
unit: venv
	$(BIN)/pytest -q

# Everything: the fast suite on both cores, then what it leaves out (real LXD, the cluster, the
# browser, GPUs, slow tests) in one process, as tests sharing one LXD daemon need.
test: venv lxd browser lint
	$(BIN)/pytest -q
	$(BIN)/pytest -q -m "lxd or gpu or slow" tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
