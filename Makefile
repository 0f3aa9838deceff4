# Two entry points, each doing its own idempotent set-up on a fresh Debian machine:
#   make demo   the end-to-end demo on the embedded stack (scripted model, real everything else)
#   make test   the test suite (what CI runs)
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# git for workspaces; Java + aapt/zipalign/apksigner/smali/framework-res build the sample APK;
# bubblewrap sandboxes repository commands; chromium (headless) and zbar-tools (zbarimg) test
# the install page at a phone's size and its QR code.
APT_PACKAGES := git python3-venv default-jre-headless aapt zipalign apksigner libsmali-java \
	android-framework-res bubblewrap \
	chromium zbar-tools docker-compose

.PHONY: setup apt demo test test-all lint clean
.DEFAULT_GOAL := help

help:
	@echo "make demo      run the end-to-end demo (sets itself up)"
	@echo "make test      run the tests (sets itself up)"
	@echo "make test-all  also run the slow optional suites"
	@echo "make lint      ruff, format check, mypy and the import-linter layer contracts"

apt:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check --upgrade pip
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

setup: apt $(VENV)/.installed

demo: setup
	$(VENV)/bin/honk demo

test: setup lint
	$(VENV)/bin/pytest

# Lint, format, types and layers: part of `make test`, and quick on its own.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test-all: setup
	$(VENV)/bin/pytest -m ''

clean:
	rm -rf $(VENV) .honk
