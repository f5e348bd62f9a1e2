# edgecam — build, test and try it. The two commands that matter on a fresh Debian 12:
#   make dry-run   runs the whole agent on a test clip (DURATION=20s to stop by itself)
#   make test      runs every test
# Both install what they need (Debian packages through scripts/install-deps.sh, Go modules).

SHELL      := bash
GO         ?= go
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT     ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS    := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
DURATION   ?= 0
OUT        ?= out/dry-run
CLIPS      := testdata/clips
# Tests run under the race detector; CI caps the whole run well inside its time limit.
TESTFLAGS  ?= -race -timeout 30m
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all deps build test dry-run testdata lint bench clean kvssink deps-cross deb sysroot cross-check systemd-check

all: build

deps:
	@scripts/install-deps.sh
	@$(GO) mod download

build: deps
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/edgecam ./cmd/edgecam

testdata: deps $(CLIPS)/.stamp $(CLIPS)/.outdoor-stamp

# Clips are regenerated when the generator changes.
$(CLIPS)/.stamp: scripts/gen-testdata.sh
	scripts/gen-testdata.sh --clean $(CLIPS)
	@touch $@

# The synthetic outdoor clips follow their renderer (the script remakes only those).
$(CLIPS)/.outdoor-stamp: $(CLIPS)/.stamp $(wildcard internal/synthscene/*.go scripts/synthclip/*.go)
	scripts/gen-testdata.sh $(CLIPS)
	@touch $@

# kvssink, built from AWS's producer sources when they are here (KVS_PRODUCER_SRC, or
# ../shared/third_party/kvs-producer); cached, so a no-op after the first build. Tests and
# dry-run find it in .cache/kvssink (recording.kvs.plugin_dir, or EDGECAM_RECORDING_KVS_PLUGIN_DIR, overrides).
kvssink:
	@scripts/build-kvssink.sh --if-sources

dry-run: build testdata kvssink
	./bin/edgecam dry-run --duration $(DURATION) --out $(OUT)

test: deps testdata kvssink systemd-check
	$(GO) test $(TESTFLAGS) ./...

# The fault suite alone (README "Fault suite"): the TestFault* tests and the older fault
# tests the table names. make test runs them too.
FAULT_TESTS := ^(TestFault.*|TestMotionEventsSurviveOutageAndRestart|TestSignalingReconnects|TestLiveViewAfterLocalcloudRestart|TestAgentKVSResumesAfterLocalcloudRestart|TestKill9DuringRecording|TestDiskFullMidSegment|TestOpenSegmentPlaysAfterPowerCut|TestKVSCredentialFileSurvivesClockSteps|TestJanitorSurvivesClockSteps)$$
.PHONY: test-faults
test-faults: deps testdata kvssink
	$(GO) test $(TESTFLAGS) -run '$(FAULT_TESTS)' ./agent/ ./cmd/edgecam/ ./media/ ./provisioning/

# The service unit: systemd-analyze verify must be silent and the offline security exposure
# at most 2.5 (printed). Works without systemd as PID 1.
systemd-check: deps
	@systemd/check.sh

lint: deps
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# Packages. make deb: a .deb for the host, or ARCH=arm64 / ARCH=armhf (Raspberry Pi OS 64- /
# 32-bit) cross-compiled with cgo against a cached Debian sysroot (make sysroot). make
# cross-check runs edgecam version and config validate of both ARM .debs under qemu-user.
ARCH       ?= $(shell dpkg --print-architecture)
CROSS_ARCHES := arm64 armhf

deps-cross:
	@DEPS_SET=cross scripts/install-deps.sh

deb: deps $(if $(filter-out $(shell dpkg --print-architecture),$(ARCH)),deps-cross)
	ARCH=$(ARCH) packaging/build-deb.sh dist

sysroot: deps-cross
	@for a in $(CROSS_ARCHES); do scripts/cross-sysroot.sh $$a >/dev/null || exit 1; done

cross-check: deps deps-cross
	@for a in $(CROSS_ARCHES); do $(MAKE) --no-print-directory deb ARCH=$$a || exit 1; done
	scripts/cross-check.sh $(CROSS_ARCHES)

# Benchmarks: make bench runs every benchmark and end-to-end measurement (scripts/benchmd) and
# rewrites BENCHMARKS.md: the machine, the date, the load, each figure (median of its runs) with
# its command; each command's output in out/bench/. ~45 min on 2 cores. BENCH_COUNT (runs of the
# micro-benchmarks), BENCH_E2E_COUNT (provisioning, time to first frame), BENCH_LOAD_COUNT and
# BENCH_LOAD_WINDOW (the agent CPU/RSS matrix, 24 agents a run); BENCH_QUICK=1 tries it in a
# few minutes. Figures never go into test assertions.
BENCH_COUNT      ?= 5
BENCH_E2E_COUNT  ?= 3
BENCH_LOAD_COUNT ?= 1
BENCH_LOAD_WINDOW ?=
BENCH_QUICK      ?=
bench: deps testdata kvssink
	$(GO) run ./scripts/benchmd -count $(BENCH_COUNT) -e2e-count $(BENCH_E2E_COUNT) \
		-load-count $(BENCH_LOAD_COUNT) -load-window '$(BENCH_LOAD_WINDOW)' $(if $(filter 1,$(BENCH_QUICK)),-quick)

# Fuzzing: every FuzzXxx target in the module, FUZZTIME each, one after another (a crasher is
# kept in the package's testdata/fuzz and becomes a regression test). FUZZPARALLEL=1 on a busy machine.
FUZZTIME   ?= 1m
.PHONY: fuzz
fuzz: deps
	FUZZTIME=$(FUZZTIME) FUZZPARALLEL=$(FUZZPARALLEL) scripts/fuzz.sh

# Soak (not in make test): the built agent for SOAK_DURATION against localcloud with viewers
# joining and leaving, motion, credential rotation and a localcloud restart; samples.csv,
# soak.svg and verdict.txt in out/soak/ (internal/soak; the ball clip is generated if missing).
# Exits non-zero on FAIL.
SOAK_DURATION ?= 30m
.PHONY: soak
soak: build
	$(GO) run ./scripts/soak -agent bin/edgecam -duration $(SOAK_DURATION) -out out/soak

clean:
	rm -rf bin out dist $(CLIPS)
