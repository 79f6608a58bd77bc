# hearth — the two commands a newcomer needs:
#   make run    start a standalone server on 127.0.0.1:3233 (installs what it needs)
#   make test   run the whole test suite (lints, unit, integration; system tests when root)

CARGO ?= cargo
LISTEN ?= 127.0.0.1:3233
DATA_DIR ?= $(CURDIR)/.hearth

.PHONY: all deps deps-test build run test lint unit-test client-test bench bench-quick clean deb rpm packages

all: build

deps:
	scripts/install-deps.sh

deps-test:
	HEARTH_DEPS=test scripts/install-deps.sh

build: deps
	$(CARGO) build --release --bins

run: build
	./target/release/hearthd standalone --listen $(LISTEN) --data-dir $(DATA_DIR)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

unit-test:
	$(CARGO) test --lib --bins --tests

test: deps-test lint unit-test

# The platform benchmark (benches/platform; see BENCHMARKS.md): builds hearthd with the
# bench profile, starts what it measures, cleans up. Needs root and runc, like the invoker.
bench-quick:
	$(CARGO) bench --bench platform -- --quick

bench:
	$(CARGO) bench --bench platform

clean:
	$(CARGO) clean
	rm -rf $(DATA_DIR)

# Distro packages into target/packages/ (installs debhelper, lintian, rpm when missing; root).
deb:
	scripts/build-packages.sh deb

rpm:
	scripts/build-packages.sh rpm

packages:
	scripts/build-packages.sh all
