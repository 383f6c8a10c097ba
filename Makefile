# mc: the two commands that matter are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
FUZZ_SECONDS ?= 60

.PHONY: setup test demo lint test-rust test-python fuzz bench bench-egress bench-paths testbed-up testbed-down

## setup: install and build everything a fresh machine lacks (idempotent)
setup:
	scripts/setup

## test: every test — formatting, clippy, Rust unit/e2e tests on the real testbed, Python tests
test: lint test-rust test-python

lint:
	$(CARGO) fmt --all --check
	@if $(CARGO) tree --workspace --locked -i aws-lc-rs >/dev/null 2>&1; then \
	  echo "lint: aws-lc-rs is in the dependency graph; ring must be the only rustls crypto provider:"; \
	  $(CARGO) tree --workspace -i aws-lc-rs; exit 1; fi
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# Tests that route traffic through Endpoints need the test-host addresses of scripts/in-netns;
# everything is built first, outside it, so the sealed namespace needs no network.
test-rust:
	$(CARGO) build --locked -q --bins
	scripts/build-images mc
	$(CARGO) test --locked --no-run -q
	scripts/in-netns $(CARGO) test --locked

test-python:
	@if [ -d mc-py/tests ]; then \
	  (VIRTUAL_ENV=$(CURDIR)/.venv PATH=$(CURDIR)/.venv/bin:$$PATH maturin develop -q -m mc-py/Cargo.toml) && \
	  scripts/in-netns .venv/bin/pytest -q mc-py/tests; \
	else echo "test-python: mc-py/tests does not exist yet"; fi

## demo: set up if needed, then run the two-cluster walkthrough on the testbed's real clusters
demo:
	@[ -x .venv/bin/python ] && [ -x "$${MC_CACHE:-$$HOME/.cache/mc}/bin/kubelet-$$(sed -n 's/^KUBE_VERSION=//p' tests/testbed/go/versions.env)/kubelet" ] \
	  && [ -f "$${MC_CACHE:-$$HOME/.cache/mc}/images/podinfo.tar" ] || scripts/setup
	scripts/demo

## fuzz: run every cargo-fuzz target for FUZZ_SECONDS seconds each
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz

## bench-egress: one mc-gateway egress serving ROUTES routes (default 1000) from the testbed's
## API: its RSS, setup time, and time for an added route to become reachable (release build)
ROUTES ?= 1000
ADDS ?= 20
bench-egress:
	$(CARGO) build --release --locked -q -p mc-gateway --bin mc-gateway -p mc-tests --bin mc-bench-egress
	scripts/in-netns $${CARGO_TARGET_DIR:-target}/release/mc-bench-egress --routes $(ROUTES) --adds $(ADDS)

## bench-paths: p50/p99 and CPU per request of a plain west Pod's request to east through mc's
## egress and gateway, straight to west's podinfo, and through an HAProxy mTLS peer, on the
## testbed's real clusters (REQUESTS per path, in blocks of BLOCK; installs haproxy if missing)
REQUESTS ?= 10000
BLOCK ?= 1000
bench-paths:
	@command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || { \
	  echo "bench-paths: installing haproxy (the peer)"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y haproxy; }
	@command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || { echo "bench-paths: haproxy is still missing"; exit 1; }
	$(CARGO) build --release --locked -q -p mc-cli --bin mc -p mc-tests --bin mc-bench-paths
	scripts/build-images mc
	scripts/build-images haproxy
	scripts/in-netns $${CARGO_TARGET_DIR:-target}/release/mc-bench-paths --requests $(REQUESTS) --block $(BLOCK)

testbed-up:
	$(CARGO) run -q -p mc-tests --bin mc-testbed -- up --dir .testbed

testbed-down:
	$(CARGO) run -q -p mc-tests --bin mc-testbed -- down --dir .testbed
