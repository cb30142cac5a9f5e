# TasQ developer tasks. `make help` lists them.
#
# Tests that need PostgreSQL get it from internal/testpg: TASQ_DATABASE_URL
# when set, else a Docker container, else the local binaries
# (`apt-get install -y postgresql`).

GO   ?= go
PKGS ?= ./...

.DEFAULT_GOAL := help
.PHONY: help deps test fmt-check vet lint bench bench-compare bench-compare-redis demo build chaos

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

test: deps fmt-check vet ## install missing servers, gofmt check, go vet, then all tests with the race detector
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

deps: ## install the servers the tests start (PostgreSQL, Redis, MariaDB, Node.js) when missing; needs root
	@bash .ci/deps

fmt-check: ## fail when a file needs gofmt
	@out="$$(gofmt -l .)"; \
	if [ -n "$$out" ]; then echo "these files need formatting (run: gofmt -w .):"; echo "$$out"; exit 1; fi

vet: ## go vet
	$(GO) vet $(PKGS)

lint: fmt-check vet ## gofmt, go vet and staticcheck
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest $(PKGS)

chaos: deps ## the long chaos suite: SIGKILL, SIGSTOP, killed connections, PostgreSQL restarts, cancel+retry (make test runs a short one)
	TASQ_CHAOS=long $(GO) test -count=1 -timeout 60m -v -run 'TestChaos' ./integration/chaos/

demo: ## run the demo (needs PostgreSQL: TASQ_DATABASE_URL, or local binaries)
	$(GO) run ./cmd/tasq demo

bench: ## run the benchmark
	$(GO) run ./cmd/tasq bench

build: ## build bin/tasq
	$(GO) build -o bin/tasq ./cmd/tasq

bench-compare: ## TasQ vs River on one fresh PostgreSQL: burn-down, continuous (fresh and used table), insert, latency at 500 and 5,000/s, scale-out 1/2/4 processes, yardstick; medians (min-max) of --runs (BENCH_COMPARE_FLAGS)
	$(GO) run ./bench/compare $(BENCH_COMPARE_FLAGS)

bench-compare-redis: ## TasQ on Redis vs asynq on the same fresh Redis, 3 runs each, with ratios (MySQL too with TASQ_MYSQL_URL)
	$(GO) run ./bench/compareredis
