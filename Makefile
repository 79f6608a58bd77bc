# hearth — the two commands a newcomer needs:
#   make run    start a standalone server on 127.0.0.1:3233 (installs what it needs)
#   make test   run the whole test suite (lints, unit, integration; system tests when root)

CARGO ?= cargo
LISTEN ?= 127.0.0.1:3233
DATA_DIR ?= $(CURDIR)/.hearth

.PHONY: all deps deps-test build run test lint broker unit-test bench bench-quick clean deb rpm packages

all: build

deps:
	scripts/install-deps.sh

deps-test:
	HEARTH_DEPS=test scripts/install-deps.sh

build: deps
	$(CARGO) build --release --bins

run: build
	./target/release/hearthd standalone --listen $(LISTEN) --data-dir $(DATA_DIR)

# The Kafka bus is a cargo feature (librdkafka builds with cmake): on for lints and tests.
FEATURES ?= --features kafka

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets $(FEATURES) -- -D warnings

# The Kafka-protocol broker the multi-host tests run against (built once, cached).
broker:
	scripts/build-broker.sh >/dev/null

unit-test:
	TANSU="$$(scripts/build-broker.sh)" $(CARGO) test $(FEATURES) --lib --bins --tests

test: deps-test lint broker unit-test

# The platform benchmark (benches/platform; see BENCHMARKS.md): builds hearthd with the
# bench profile, starts what it measures, cleans up. Needs root and runc, like the invoker.
bench-quick:
	TANSU="$$(scripts/build-broker.sh)" $(CARGO) bench $(FEATURES) --bench platform -- --quick

bench:
	TANSU="$$(scripts/build-broker.sh)" $(CARGO) bench $(FEATURES) --bench platform

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
