# The two commands of the README: `make demo` (the main job) and `make test` (every test).
# Everything they need is installed, pinned, from this repository's own files.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/perfagent-target

.PHONY: demo test unit lint infra-check e2e bench fuzz up down fmt

demo: ## The local stack and the full demo loop
	bash local/demo.sh

test: ## Every test: format, lints, unit and property tests, conformance, infra checks, end to end
	bash local/test.sh

unit:
	cargo test --workspace --exclude perfagent-e2e

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

bench: ## Benchmarks that print RESULT lines with ratios measured in the same run
	bash local/bench.sh

fuzz: ## Fuzz the parser and the engine adapters, 10 M executions per target (FUZZ_RUNS, FUZZ_SECONDS)
	bash local/fuzz.sh

up: ## Start the emulator and deploy infra/template.yaml into it
	bash local/up.sh

down: ## Stop everything the local stack started
	bash local/down.sh

fmt:
	cargo fmt --all
