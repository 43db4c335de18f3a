# Every target is a thin wrapper around a script in hack/, so CI, `make` and a person
# at a shell all run the same steps. `make` alone prints the list below.
# Pass pytest arguments with ARGS, e.g. `make test ARGS='-k watch -x'`.

SHELL := /bin/bash
.DEFAULT_GOAL := help
ARGS ?=

.PHONY: help up down test test-web web walkthrough lint gen e2e bench bench-quick images clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

up: ## Start a local Dora (dockerd, etcd, apiserver, controllers, agent, web app on :8080) in the background; state in ~/.local/share/dora
	hack/up.sh

down: ## Stop what `make up` started (web app included); keeps the data
	hack/down.sh

test: ## Set up the machine, verify generated code, lint, run unit + integration tests
	hack/test.sh $(ARGS)

test-web: ## Only the web app's tests (tests/browser: headless Chromium on a real cluster)
	hack/test.sh --web-only $(ARGS)

web: ## Build the web app (web/ -> web/dist) when its sources changed
	hack/web-build.sh

walkthrough: ## The README walk-through, scripted, on a throwaway `make up` cluster (CI runs it)
	hack/walkthrough.sh

lint: ## ruff, mypy (strict) and the import-linter layer contracts
	hack/venv.sh
	hack/lint.sh

gen: ## Regenerate dora/api/v1 from proto/
	hack/venv.sh
	hack/gen-proto.sh

e2e: ## Run the e2e suite (e2e/) against the whole system
	hack/suite.sh e2e $(ARGS)

bench: ## Run the benchmarks (bench/): a table of figures vs baselines, and bench/results.json
	hack/bench.sh $(ARGS)

bench-quick: ## The same benchmarks at small sizes, in under 2 minutes
	hack/bench.sh --quick $(ARGS)

images: ## Build dora/dora, dora/etcd and dora/busybox locally (no registry is used)
	hack/venv.sh
	hack/dora-image.sh
	hack/etcd-image.sh
	hack/busybox-image.sh

clean: ## Remove .venv, caches and build outputs (never the data dir of `make up`)
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache .hypothesis .import_linter_cache build dist
	find . -path ./.git -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +
