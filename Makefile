# Agora's build. The two commands a new user needs: `make run` and `make test`.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
export PATH := /usr/local/go/bin:$(PATH)

GO           ?= go
BIN          ?= bin/agora
TEST_TIMEOUT ?= 20m
# make test fuzzes two targets at a time, the cores shared between them (scripts/fuzz.sh)
FUZZ_TEST_LANES ?= 2
BENCH        ?= .
BENCH_COUNT  ?= 6
BENCH_TIME   ?= 1s
FUZZ_TIME    ?= 10s
FUZZ_TEST_TIME ?= 3s
ARGS         ?=
VERSION      ?= $(shell git describe --tags --abbrev=0 2>/dev/null || echo dev)

CHAOS_SEED   ?= 1
CHAOS_TIME   ?= 30m

.PHONY: all build run testapp-image test lint bench bench-launch bench-agent fuzz chaos chaos-long containerd containerd-stop clean

all: build

## build: the agora binary in bin/
build:
	$(GO) build -buildvcs=auto -ldflags "-X github.com/agora-sched/agora/pkg/version.Version=$(VERSION)" -o $(BIN) ./cmd/agora

## run: build, make sure a containerd answers, import the test app's image, start `agora dev` (extra flags: make run ARGS="--http 127.0.0.1:9090")
run: build testapp-image
	sock=$$(scripts/containerd.sh start); \
	$(BIN) image import --containerd "$$sock" bin/testapp.tar; \
	exec $(BIN) dev --containerd "$$sock" $(ARGS)

## testapp-image: the test app as an OCI archive (agora.local/testapp:latest) in bin/
testapp-image:
	$(GO) run ./examples/testapp/image -o bin/testapp.tar

## lint: gofmt, go vet and staticcheck (pinned in go.mod's tool directive)
lint:
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

## test: lint, then every test against a real containerd and a headless Chromium (both installed
## from Debian's packages when missing), with the race detector but for cmd/agora's end-to-end
## tests (scripts/test.sh says why; E2E_RACE=1 races them too), the short chaos set, then every fuzz
## target for FUZZ_TEST_TIME. Timings and failed UI tests' screenshots go to .artifacts/.
test: lint
	scripts/netdeps.sh >/dev/null || true; \
	sock=$$(scripts/containerd.sh start); \
	chromium=$$(scripts/chromium.sh); \
	AGORA_CONTAINERD_SOCK="$$sock" AGORA_CHROMIUM="$$chromium" GO=$(GO) TEST_TIMEOUT=$(TEST_TIMEOUT) scripts/test.sh
	FUZZ_LANES=$(FUZZ_TEST_LANES) $(MAKE) --no-print-directory fuzz FUZZ_TIME=$(FUZZ_TEST_TIME)

## bench: benchmarks of every package that has them, in benchstat's input format
bench:
	pkgs=$$(grep -rl --include='*_test.go' '^func Benchmark' . | xargs -n1 dirname | sort -u); \
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count $(BENCH_COUNT) -benchtime $(BENCH_TIME) $$pkgs

## bench-launch: 20 tasks to running through agora dev beside containerd's own floor (20 `ctr run -d`), and each task's cost in PSS besides itself (LAUNCH_N, LAUNCH_ROUNDS)
bench-launch: build testapp-image
	scripts/bench-launch.sh

## bench-agent: one agent holding 500 tasks (AGENT_N) of a master, beside containerd's floor: time to running, the agent's memory and each task's, and a kill -9 of the agent and its restart re-attaching them all (no task restarted)
bench-agent: build testapp-image
	scripts/bench-agent.sh

## fuzz: every fuzz target for FUZZ_TIME (a crash fails, and go test saves the input under testdata/fuzz;
## scripts/fuzz.sh runs a target again once when Go's -fuzztime deadline race ends it with no input)
fuzz:
	GO=$(GO) scripts/fuzz.sh $(FUZZ_TIME)

## chaos: every chaos scenario (chaos/) on real multi-process clusters, with a fixed seed; one verdict line each
chaos:
	scripts/netdeps.sh >/dev/null || true; \
	sock=$$(scripts/containerd.sh start); \
	AGORA_CONTAINERD_SOCK="$$sock" $(GO) test -count=1 -v -timeout 60m -run 'TestScenarios' ./chaos/ -args -chaos.all -chaos.seed $(CHAOS_SEED) \
		| grep -v -E '^=== (RUN|PAUSE|CONT)'

## chaos-long: random faults on one cluster after another for CHAOS_TIME (make chaos-long CHAOS_TIME=2h CHAOS_SEED=7)
chaos-long:
	scripts/netdeps.sh >/dev/null || true; \
	sock=$$(scripts/containerd.sh start); \
	AGORA_CONTAINERD_SOCK="$$sock" $(GO) test -count=1 -v -timeout 0 -run 'TestScenarios' ./chaos/ -args -chaos.long $(CHAOS_TIME) -chaos.seed $(CHAOS_SEED) \
		| grep -v -E '^=== (RUN|PAUSE|CONT)'

## containerd: start (or find) the containerd the tests and `agora dev` use
containerd:
	scripts/containerd.sh start

## containerd-stop: stop the private containerd, if one was started
containerd-stop:
	scripts/containerd.sh stop

clean:
	rm -rf bin .agora .artifacts
