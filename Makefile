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
GOVULNCHECK_VER := v1.9.0
# The Go vulnerability database, as a module version: make vuln indexes its OSV files with the module's own
# cmd/indexdb into a local database (the public one is not reachable here).
VULNDB_VER    := v0.0.0-20261105234957-e22db6528018
# Tools are installed through the Go module proxy at pinned versions, cached outside the checkout. Those that
# load the main module's packages are built by its toolchain (one built by an older Go cannot type-check that
# standard library), so their directory names the toolchain too.
TOOLS_DIR     ?= $(HOME)/.cache/txmesh/tools
TOOL_GO       := GOTOOLCHAIN=$(GO_TOOLCHAIN) $(GO)
GOLANGCI_LINT := $(TOOLS_DIR)/golangci-lint-$(GOLANGCI_VER)-$(GO_TOOLCHAIN)/golangci-lint
MOCKGEN       := $(TOOLS_DIR)/mockgen-$(MOCKGEN_VER)-$(GO_TOOLCHAIN)/mockgen
ACTIONLINT    := $(TOOLS_DIR)/actionlint-$(ACTIONLINT_VER)/actionlint
GOVULNCHECK   := $(TOOLS_DIR)/govulncheck-$(GOVULNCHECK_VER)-$(GO_TOOLCHAIN)/govulncheck
INDEXDB       := $(TOOLS_DIR)/indexdb-$(VULNDB_VER)/indexdb
VULNDB_DIR    := $(HOME)/.cache/txmesh/vulndb/$(VULNDB_VER)
# make vuln VULN_DB= uses govulncheck's default, the live database (CI on GitHub does).
VULN_DB       ?= file://$(VULNDB_DIR)
COMMANDS      := bank store txaudit
# What the binaries answer to --version and log at start, stamped as the Dockerfile does (its VERSION build
# argument): the checkout's `git describe`; `make build VERSION=1.2.3` overrides it.
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
STAMP         := -X main.version=$(VERSION)
FUZZTIME      ?= 60s
LAB_DURATION  ?= 2m
LAB_SEED      ?= 1
LAB_RATE      ?= 50

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z][a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

.PHONY: run
run: ## the main job: local PostgreSQL + Bank + Store with mTLS, live progress; Ctrl-C stops and audits
	CGO_ENABLED=0 $(GO) build -ldflags='$(STAMP)' -o bin/ $(addprefix ./src/cmd/,$(COMMANDS) txlocal)
	./bin/txlocal $(RUN_ARGS)

.PHONY: test
test: test-go test-manifests test-mesh ## every test, for real (unit, integration on real PostgreSQL, manifests, mesh)

.PHONY: test-go
test-go: ## Go unit + integration tests (starts throwaway PostgreSQL servers; fuzz seed corpora included)
	$(GO) test -count=1 -timeout 15m ./...
	$(GO) test -count=1 -tags txmesh_negative_control -run TestNegativeControl ./src/internal/relay/

.PHONY: test-manifests
test-manifests: ## render and validate every Kubernetes/Istio/Flux/Flagger/CNPG manifest offline
	@if [ -f test/manifests/go.mod ]; then cd test/manifests && $(GO) test -count=1 -timeout 15m ./...; \
	else echo "test/manifests not present yet"; fi

# test/mesh links Istio's control plane into its test binary. Go's build cache keeps the compiled packages;
# the binary itself (a link of ~1 min on 2 busy cores) is cached by Istio version, Go version, checkout and
# the module's sources, so an unchanged tree only runs it. Older binaries of the same Istio are removed.
MESH_ISTIO    := $(shell sed -n 's/^[[:space:]]*istio.io\/istio //p' test/mesh/go.mod)
MESH_CACHE    := $(HOME)/.cache/txmesh/mesh/istio-$(MESH_ISTIO)

.PHONY: test-mesh
test-mesh: ## Istio's control plane (pinned, in-process) computes every sidecar's Envoy config from the overlays, mesh/ and Flagger's objects; asserts mTLS, RBAC, retries, outlier detection, faults; istioctl analyze
	@key=$$( { (cd test/mesh && $(GO) version); echo $(CURDIR); cat test/mesh/go.mod test/mesh/go.sum test/mesh/*.go; } | sha256sum | cut -c1-16 ); \
	bin=$(MESH_CACHE)/mesh-$$key.test; \
	if [ ! -x "$$bin" ]; then \
	  mkdir -p $(MESH_CACHE) && find $(MESH_CACHE) -name 'mesh-*.test' -delete && \
	  echo "building the mesh tests (Istio $(MESH_ISTIO)) into $$bin" && \
	  (cd test/mesh && $(GO) test -c -o "$$bin.tmp" .) && mv "$$bin.tmp" "$$bin"; \
	fi; \
	cd test/mesh && "$$bin" -test.count=1 -test.timeout=20m

# The throwaway cluster (test/cluster, its own module): Kubernetes, CoreDNS, CloudNativePG and
# local-path-provisioner built from the module proxy, cached by version in ~/.cache/txmesh/cluster.
CLUSTER_GO := cd test/cluster && $(GO)

.PHONY: cluster-up
cluster-up: ## throwaway 3-node Kubernetes on this machine with txmesh deployed (root; builds what is not cached); last line KUBECONFIG=...
	@$(CLUSTER_GO) run ./cmd/cluster up -repo $(CURDIR)

.PHONY: cluster-build
cluster-build: ## only build (or find cached) every binary and image of the cluster and every CD component, helm-controller included
	@$(CLUSTER_GO) run ./cmd/cluster build -repo $(CURDIR)

.PHONY: cluster-down
cluster-down: ## remove the throwaway cluster and everything it made (safe to repeat, works after a crash)
	@$(CLUSTER_GO) run ./cmd/cluster down

.PHONY: e2e
e2e: ## the cluster suite: harness tests, then every scenario under load, audited (E2E_SCENARIOS=a,b E2E_KEEP=1 E2E_ARGS=)
	$(CLUSTER_GO) test -count=1 -timeout 20m ./...
	$(CLUSTER_GO) run ./cmd/e2e -repo $(CURDIR) $(E2E_ARGS)

.PHONY: lab
lab: ## HA lab: faults + kill -9 of the bank-db primary, sync standby vs negative control (LAB_DURATION, LAB_SEED, LAB_RATE, LAB_ARGS; LAB_ARGS=-negative-relay adds the relay's)
	CGO_ENABLED=0 $(GO) build -ldflags='$(STAMP)' -o bin/ $(addprefix ./src/cmd/,$(COMMANDS)) ./test/lab/cmd/lab
	CGO_ENABLED=0 $(GO) build -tags txmesh_negative_control -ldflags='$(STAMP)' -o bin/negative/ ./src/cmd/store
	./bin/lab -duration $(LAB_DURATION) -seed $(LAB_SEED) -rate $(LAB_RATE) $(LAB_ARGS)

.PHONY: bench
bench: ## benchmark: pgbench with the Bank's SQL vs the Bank, outbox drain, end to end (BENCH_ARGS; not part of make test)
	$(GO) run ./test/bench $(BENCH_ARGS)

.PHONY: vuln
vuln: $(GOVULNCHECK) $(if $(filter file://$(VULNDB_DIR),$(VULN_DB)),$(VULNDB_DIR)/index/db.json) ## govulncheck (pinned) on the shipped commands: fails on any reachable known vulnerability (offline database from golang.org/x/vulndb; VULN_DB= for the live one)
	$(GO) version
	$(GOVULNCHECK) $(if $(VULN_DB),-db $(VULN_DB)) $(addprefix ./src/cmd/,$(COMMANDS))

# The offline database: the vulndb module's OSV files (data/osv) indexed by its cmd/indexdb, written aside
# and moved into place, so an interrupted build leaves nothing half-written behind.
$(VULNDB_DIR)/index/db.json: | $(INDEXDB)
	cd $(TOOLS_DIR) && $(GO) mod download golang.org/x/vulndb@$(VULNDB_VER)
	src=$$(cd $(TOOLS_DIR) && $(GO) list -m -f '{{.Dir}}' golang.org/x/vulndb@$(VULNDB_VER)) && \
	  rm -rf $(VULNDB_DIR).tmp && $(INDEXDB) -vulns "$$src/data/osv" -out $(VULNDB_DIR).tmp && \
	  rm -rf $(VULNDB_DIR) && mv $(VULNDB_DIR).tmp $(VULNDB_DIR)
	@echo "vulnerability database: $$(ls $(VULNDB_DIR)/ID/*.json | wc -l) entries from golang.org/x/vulndb@$(VULNDB_VER)"

.PHONY: capacity
capacity: ## the capacity model of docs/scaling.md: its table from the measured inputs (CAPACITY_ARGS='-db-vcpu 32 ...'; -h lists them)
	$(GO) run ./test/capacity $(CAPACITY_ARGS)

.PHONY: terraform-check
terraform-check: ## terraform/: OpenTofu v1.10.6 and its providers built from the Go module proxy (cached in ~/.cache/txmesh/terraform), tofu init, validate, test (mock providers), fmt -check; no registry (TF_MODULES=kubernetes: that module only)
	shellcheck terraform/build/check.sh
	terraform/build/check.sh check $(TF_MODULES)

.PHONY: fuzz
fuzz: ## explore the request decoder with the fuzzer (FUZZTIME=60s)
	$(GO) test -run '^$$' -fuzz FuzzDecodeTransaction -fuzztime $(FUZZTIME) ./src/internal/payment/

.PHONY: lint
lint: $(GOLANGCI_LINT) $(ACTIONLINT) ## gofmt, go vet, golangci-lint (pinned), actionlint, shellcheck, commit subjects ≤ 72 characters
	@out=$$(gofmt -l src); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOLANGCI_LINT) run --allow-serial-runners ./...
	@if [ -f test/manifests/go.mod ]; then cd test/manifests && $(GO) vet ./... && $(GOLANGCI_LINT) run --allow-serial-runners ./...; fi
	@out=$$(gofmt -l test/mesh); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	cd test/mesh && $(GO) vet ./... && $(GOLANGCI_LINT) run --allow-serial-runners ./...
	@out=$$(gofmt -l test/cluster); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	cd test/cluster && $(GO) vet ./... && $(GOLANGCI_LINT) run --allow-serial-runners ./...
	$(ACTIONLINT) .github/workflows/*.yml
	shellcheck .ci/run .ci/subjects
	bash .ci/subjects

.PHONY: build
build: ## static binaries in bin/ (CGO_ENABLED=0), version stamped as the image's (VERSION=git describe)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w $(STAMP)' -o bin/ $(addprefix ./src/cmd/,$(COMMANDS))

.PHONY: generate
generate: $(MOCKGEN) ## regenerate gomock mocks
	PATH=$(dir $(MOCKGEN)):$$PATH $(GO) generate ./...

.PHONY: tools
tools: $(GOLANGCI_LINT) $(MOCKGEN) $(ACTIONLINT) $(GOVULNCHECK) $(INDEXDB) ## install the pinned tools

$(GOLANGCI_LINT):
	GOBIN=$(dir $@) $(TOOL_GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VER)

$(MOCKGEN):
	GOBIN=$(dir $@) $(TOOL_GO) install go.uber.org/mock/mockgen@$(MOCKGEN_VER)

$(GOVULNCHECK):
	GOBIN=$(dir $@) $(TOOL_GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VER)

$(INDEXDB):
	GOBIN=$(dir $@) $(TOOL_GO) install golang.org/x/vulndb/cmd/indexdb@$(VULNDB_VER)

$(ACTIONLINT):
	GOBIN=$(dir $@) $(GO) install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VER)
