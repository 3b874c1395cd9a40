# The two commands of the README: `make demo` runs the gateway's main job on a fresh machine,
# `make test` runs the whole test suite on a fresh machine (installing what is missing).
.PHONY: test lint unit e2e demo bench fuzz build

CARGO ?= cargo

build:
	$(CARGO) build --release -p fluxgate

test:
	bash scripts/install-test-deps.sh
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) build -p fluxgate
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc

demo:
	bash scripts/demo.sh

bench:
	bash bench/run.sh
	BUILD=0 bash bench/relay.sh

# Bounded fuzzing of every decoder (stable toolchain, RUSTC_BOOTSTRAP for the sanitizer flags).
fuzz:
	bash scripts/fuzz.sh $(or $(SECONDS_PER_TARGET),60)
