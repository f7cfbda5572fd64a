# txmesh — every target a newcomer needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO            ?= go
# The main module builds, tests and is scanned with go.mod's toolchain line (go1.27.3: it has the standard
# library's fixes that make vuln requires). GOTOOLCHAIN=auto makes the go command honour that line, fetching
# the toolchain through the module proxy (module golang.org/toolchain) when the installed Go is older, also
# where the installation defaults to GOTOOLCHAIN=local; test/manifests and test/cluster name no toolchain and
# keep the installed Go.
GO_TOOLCHAIN  := $(shell sed -n 's/^toolchain //p' go.mod)
export GOTOOLCHAIN := auto
# golangci-lint v2.15.0: v2.6.2's x/tools cannot read the export data of go1.27 ("export data version 5").
GOLANGCI_VER  := v2.15.0
MOCKGEN_VER   := v0.6.0
ACTIONLINT_VER:= v1.7.12
# Tools are installed through the Go module proxy at pinned versions, cached outside the checkout.
TOOLS_DIR     ?= $(HOME)/.cache/txmesh/tools
GOLANGCI_LINT := $(TOOLS_DIR)/golangci-lint-$(GOLANGCI_VER)/golangci-lint
MOCKGEN       := $(TOOLS_DIR)/mockgen-$(MOCKGEN_VER)/mockgen
ACTIONLINT    := $(TOOLS_DIR)/actionlint-$(ACTIONLINT_VER)/actionlint
COMMANDS      := bank store txaudit
FUZZTIME      ?= 60s
LAB_DURATION  ?= 2m
LAB_SEED      ?= 1
LAB_RATE      ?= 50

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z][a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

.PHONY: run
run: ## the main job: local PostgreSQL + Bank + Store with mTLS, live progress; Ctrl-C stops and audits
	CGO_ENABLED=0 $(GO) build -o bin/ $(addprefix ./src/cmd/,$(COMMANDS) txlocal)
	./bin/txlocal $(RUN_ARGS)

.PHONY: test
test: test-go test-manifests ## every test, for real (unit, integration on real PostgreSQL, manifests)

.PHONY: test-go
test-go: ## Go unit + integration tests (starts throwaway PostgreSQL servers; fuzz seed corpora included)
	$(GO) test -count=1 -timeout 15m ./...

.PHONY: test-manifests
test-manifests: ## render and validate every Kubernetes/Istio/Flux/Flagger/CNPG manifest offline
	@if [ -f test/manifests/go.mod ]; then cd test/manifests && $(GO) test -count=1 -timeout 15m ./...; \
	else echo "test/manifests not present yet"; fi

.PHONY: lab
lab: ## HA lab: faults + kill -9 of the bank-db primary, sync standby vs negative control (LAB_DURATION, LAB_SEED, LAB_RATE, LAB_ARGS)
	CGO_ENABLED=0 $(GO) build -o bin/ $(addprefix ./src/cmd/,$(COMMANDS)) ./test/lab/cmd/lab
	./bin/lab -duration $(LAB_DURATION) -seed $(LAB_SEED) -rate $(LAB_RATE) $(LAB_ARGS)

.PHONY: bench
bench: ## benchmark: pgbench with the Bank's SQL vs the Bank, outbox drain, end to end (BENCH_ARGS; not part of make test)
	$(GO) run ./test/bench $(BENCH_ARGS)

.PHONY: capacity
capacity: ## the capacity model of docs/scaling.md: its table from the measured inputs (CAPACITY_ARGS='-db-vcpu 32 ...'; -h lists them)
	$(GO) run ./test/capacity $(CAPACITY_ARGS)
# The throwaway cluster (test/cluster, its own module): Kubernetes, CoreDNS, CloudNativePG and
# local-path-provisioner built from the module proxy, cached by version in ~/.cache/txmesh/cluster.
CLUSTER_GO := cd test/cluster && $(GO)

.PHONY: cluster-up
cluster-up: ## throwaway 3-node Kubernetes on this machine with txmesh deployed (root; builds what is not cached); last line KUBECONFIG=...
	@$(CLUSTER_GO) run ./cmd/cluster up -repo $(CURDIR)

.PHONY: cluster-down
cluster-down: ## remove the throwaway cluster and everything it made (safe to repeat, works after a crash)
	@$(CLUSTER_GO) run ./cmd/cluster down

.PHONY: e2e
e2e: ## the cluster suite: harness tests, then every scenario under load, audited (E2E_SCENARIOS=a,b E2E_KEEP=1 E2E_ARGS=)
	$(CLUSTER_GO) test -count=1 -timeout 20m ./...
	$(CLUSTER_GO) run ./cmd/e2e -repo $(CURDIR) $(E2E_ARGS)


.PHONY: fuzz
fuzz: ## explore the request decoder with the fuzzer (FUZZTIME=60s)
	$(GO) test -run '^$$' -fuzz FuzzDecodeTransaction -fuzztime $(FUZZTIME) ./src/internal/payment/

.PHONY: lint
lint: $(GOLANGCI_LINT) $(ACTIONLINT) ## gofmt, go vet, golangci-lint (pinned), actionlint, shellcheck
	@out=$$(gofmt -l src); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOLANGCI_LINT) run ./...
	@if [ -f test/manifests/go.mod ]; then cd test/manifests && $(GO) vet ./... && $(GOLANGCI_LINT) run ./...; fi
	$(ACTIONLINT) .github/workflows/*.yml
	shellcheck .ci/run

.PHONY: build
build: ## static binaries in bin/ (CGO_ENABLED=0)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o bin/ $(addprefix ./src/cmd/,$(COMMANDS))

.PHONY: generate
generate: $(MOCKGEN) ## regenerate gomock mocks
	PATH=$(dir $(MOCKGEN)):$$PATH $(GO) generate ./...

.PHONY: tools
tools: $(GOLANGCI_LINT) $(MOCKGEN) $(ACTIONLINT) ## install the pinned tools

$(GOLANGCI_LINT):
	GOBIN=$(dir $@) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VER)

$(MOCKGEN):
	GOBIN=$(dir $@) $(GO) install go.uber.org/mock/mockgen@$(MOCKGEN_VER)

$(ACTIONLINT):
	GOBIN=$(dir $@) $(GO) install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VER)
	@out=$$(gofmt -l test/cluster); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	cd test/cluster && $(GO) vet ./... && $(GOLANGCI_LINT) run ./...
