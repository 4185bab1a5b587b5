# Super Server Platform — the two commands a newcomer needs:
#   make demo   the main job on this machine: a real LXD, the example requests applied
#   make test   every test and lint, installing what it needs on a fresh Debian/Ubuntu
#   make unit   the fast suite alone (`pytest`): feedback in under a minute
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit real venv lxd lxd-packages browser clean lock

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q --upgrade pip
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# A real LXD daemon with the test images and Common-Server (idempotent; see runner/dev-lxd.sh).
# Its packages first, on their own: the browser's packages wait for them (one apt at a time),
# while the images build and the venv installs beside them (make test runs these with -j).
lxd-packages:
	bash runner/dev-lxd.sh install

lxd: lxd-packages
	bash runner/dev-lxd.sh up

# Headless Chromium and its driver from Debian, for the status page's browser test, and a
# Chinese font so its screenshot shows the page's Chinese labels as a member's phone does.
BROWSER_PACKAGES := chromium chromium-driver fonts-wqy-zenhei
browser: lxd-packages
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

# The fast suite: no LXD, no cluster, no browser, no network; under a minute on two cores.
unit: venv
	$(BIN)/pytest -q

# What the fast suite leaves out (real LXD, the cluster, the browser, GPUs, slow tests), on
# four xdist workers, since those tests mostly wait on LXD: each worker has its own ports and
# host ID blocks on the one LXD daemon, each group of tests that share more (the cluster, the
# lowest host IDs) runs whole on one worker, and a test that stops the daemon runs alone
# (tests/workers.py).
real: venv
	$(BIN)/pytest -q -n 4 -m "lxd or gpu or slow" tests

# Everything: what it needs installed, side by side (the venv's downloads beside LXD's
# packages, images and base, and the browser's packages); lint; the fast suite; then the
# real half. Not the two halves at once: that saved about half a minute, but the fast suite's two
# busy cores made LXD 5.0.2 lose the output of execs in the real half now and then.
test:
	$(MAKE) --no-print-directory -j3 --output-sync=line venv lxd browser
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory real

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
