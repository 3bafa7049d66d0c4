# Engram: `make run` serves on embedded defaults, `make test` runs the whole suite.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench install clean-data

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Engram needs Python 3.11 ($(PYTHON) not found); set PYTHON=..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# torch is installed first and pinned to the CPU build: a plain torch requirement pulls a multi-GB CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --disable-pip-version-check -q torch==2.13.0
	$(BIN)/pip install --disable-pip-version-check -q -e '.[local,dev]'
	touch $(STAMP)

install: $(STAMP)

# Real protocol peers the tests run: panva oidc-provider (an Authentik-shaped identity provider).
IDP_STAMP := tests/idp/node_modules/.package-lock.json
$(IDP_STAMP): tests/idp/package-lock.json
	npm ci --prefix tests/idp --no-audit --no-fund
	touch $@

run: $(STAMP)
	$(BIN)/engram serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# MCP clients the tests drive: mcp-remote 0.15.1, the Inspector 2.12.0 (and the Node 22 it needs).
MCP_PEERS_STAMP := tests/mcp/peers/node_modules/.package-lock.json
$(MCP_PEERS_STAMP): tests/mcp/peers/package-lock.json
	npm ci --prefix tests/mcp/peers --no-audit --no-fund
	touch $@

# The browser tests drive Debian's headless Chromium (Playwright never downloads a browser here).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@[ "$$(id -u)" = 0 ] || { echo "The browser tests need Debian's chromium: sudo apt-get install -y chromium" >&2; exit 1; }
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

test: $(STAMP) $(IDP_STAMP) $(MCP_PEERS_STAMP) $(CHROMIUM) lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python bench/search.py

clean-data:
	rm -rf .engram
