# Two commands for users: `make up` (deploy) and `make test` (every test suite).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
COLLECTIONS := $(CURDIR)/.collections
COLLECTION_LINK := $(COLLECTIONS)/ansible_collections/dbonk8s/postgresql
export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: help up up-local down-local test test-long venv dev-venv collection system-deps lint sanity units integration molecule manifests changelog-lint docs-check bench clean

help:
	@echo "make up    - virtualenv, collection, then ansible-playbook site.yml"
	@echo "make up-local / down-local - the whole system without Docker, in the local pod runtime (root)"
	@echo "make test  - install test needs (PostgreSQL 15 server if missing), run every suite"
	@echo "make test-long - the long forms of the acceptance tests (hundreds of randomised failovers...)"

# On a fresh Debian/Ubuntu machine, hack/ensure-python-venv.sh installs python3-venv (as root) or
# says which command to run: make is all that the quick start needs beforehand.
$(VENV)/.runtime: requirements.txt constraints.txt
	@hack/ensure-python-venv.sh "$(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.runtime
dev-venv: $(VENV)/.dev

collection: venv
	@hack/install-collection.sh "$(COLLECTIONS)"

# kind needs a container engine; without one, say in one sentence what works instead.
up: collection
	@if [[ "$(ARGS)" != *pg_cluster_target=existing* && "$(ARGS)" != *pg_cluster_render_only=true* ]] \
	  && ! docker info >/dev/null 2>&1 && ! podman info >/dev/null 2>&1; then \
	  echo "make up: kind needs Docker or Podman and neither answers here: start one, deploy to an existing cluster with make up ARGS='-e pg_cluster_target=existing', or try the whole system without Docker with make up-local." >&2; \
	  exit 1; fi
	$(BIN)/ansible-playbook site.yml $(ARGS)

up-local: collection system-deps
	@hack/up-local.sh $(ARGS)

down-local:
	@hack/down-local.sh

system-deps:
	@hack/install-system-deps.sh

SUITES := lint sanity changelog-lint docs-check units manifests integration molecule

test: dev-venv collection system-deps
	@hack/run-suites.sh $(SUITES)

# Long forms of acceptance tests, for a change that touches what they cover (not run by CI).
FAILOVER_CASES ?= 600
test-long: dev-venv collection system-deps
	DBONK8S_FAILOVER_CASES=$(FAILOVER_CASES) $(BIN)/pytest -q -s tests/integration/test_failover_random.py

lint: dev-venv collection
	cd $(COLLECTION_LINK) && $(BIN)/ansible-lint --profile production

sanity: dev-venv
	@hack/ansible-test-sanity.sh

changelog-lint: dev-venv
	$(BIN)/antsibull-changelog lint
	$(BIN)/antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml

docs-check: dev-venv collection
	@hack/docs-check.sh

units: dev-venv collection
	$(BIN)/pytest -q tests/unit

manifests: dev-venv collection
	$(BIN)/pytest -q tests/manifests

integration: dev-venv collection system-deps
	$(BIN)/pytest -q tests/localpods tests/integration

molecule: dev-venv collection
	@hack/molecule.sh

bench: dev-venv collection system-deps
	@for b in hack/bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(COLLECTIONS) build tests/output
