package e2e

import (
	"context"
	"fmt"
	"strings"
)

// scenario is one row of the schedule, declared in its own file: what it does (fault), what must run before
// it (needs), how it is judged, and run — the fault and the checks made on it. After run, the runner waits
// for the system to be healthy, audits it and looks up every purchase the Store accepted.
type scenario struct {
	name  string
	fault string // what the row does to the system, in words (logged when it starts)
	// needs names what the row cannot run without: other scenarios, which then run before it in the same run
	// (E2E_SCENARIOS=cd-release runs cd-bootstrap first), or harness components (keys of harness), which only
	// the throwaway cluster has: on an attached cluster the row is reported as not run.
	needs          []string
	negative       bool // the negative control: must lose, and the audit must say so
	noClientErrors bool // the scenario promises purchase clients see no 5xx and no failure
	retriesOnly    bool // clients may be told to retry (the contract's 503/504), never anything else, and none gives up
	// alerts must go to firing during the row; a quiet row fires none (alerts.go). The harness's Prometheus
	// evaluates the shipped PrometheusRule; on an attached cluster neither is checked.
	alerts []string
	quiet  bool
	before func(ctx context.Context, e *env, r *Row) error // before the load starts (nil: nothing)
	run    func(ctx context.Context, e *env, r *Row) error
}

// harness are the components the throwaway cluster runs beyond Kubernetes, CloudNativePG and txmesh that a
// scenario may need (by package name), with what an attached cluster lacks of them.
var harness = map[string]string{
	"prometheus": "the harness's own Prometheus (namespace monitoring, its scrape jobs txmesh-apps and " +
		"cnpg-instances); kube-prometheus-stack names its Service and jobs otherwise",
	"netpol": "the harness's enforcer (kube-network-policies built here), its busybox image and this machine's " +
		"processes",
	"flux":      "Flux's controllers built here",
	"flagger":   "Flagger built here (kubernetes provider, the harness's Prometheus)",
	"gitserver": "the Git server on the throwaway cluster's bridge",
	"backups": "the harness's object store (versitygw) and Barman Cloud plugin; kind's workflow installs neither " +
		"(its overlay removes the backups)",
	"postgres-images": "the harness's PostgreSQL 17 and 18 operand images built for the major upgrade " +
		"(cnpg.UpgradeFrom, cnpg.UpgradeTo); kind's workflow deploys bank-db on the manifests' 18 from the start",
}

// plan returns the scenarios to run, in schedule order: those named (every one when none is) and every
// scenario they need, transitively, which then runs before them; added names the ones run only because
// another needs them, and which.
func plan(all []scenario, names []string) (run []scenario, added []string, err error) {
	if len(names) == 0 {
		return all, nil, nil
	}
	byName := map[string]scenario{}
	var known []string
	for _, s := range all {
		byName[s.name] = s
		known = append(known, s.name)
	}
	for _, n := range names {
		if _, ok := byName[n]; !ok {
			return nil, nil, fmt.Errorf("unknown scenario %q (E2E_SCENARIOS takes: %s)", n, strings.Join(known, ","))
		}
	}
	neededBy := map[string]string{} // scenario → the one that needs it ("" when named)
	var need func(n, by string)
	need = func(n, by string) {
		if _, ok := neededBy[n]; ok {
			return
		}
		neededBy[n] = by
		for _, d := range byName[n].needs {
			if _, ok := byName[d]; ok {
				need(d, n)
			}
		}
	}
	for _, n := range names {
		need(n, "")
	}
	for _, n := range names {
		neededBy[n] = ""
	}
	for _, s := range all {
		by, ok := neededBy[s.name]
		if !ok {
			continue
		}
		run = append(run, s)
		if by != "" {
			added = append(added, fmt.Sprintf("%s (%s needs it)", s.name, by))
		}
	}
	return run, added, nil
}
