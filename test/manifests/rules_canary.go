package manifests

import (
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	flaggerv1 "github.com/fluxcd/flagger/pkg/apis/flagger/v1beta1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// canaryRules: Flagger's acceptance and load tests move real money in the Bank. They must spend the canary
// accounts (CANARY-…, created by `bank seed --canary-accounts`) only, and those accounts must exist wherever
// the webhooks run.
var canaryRules = []Rule{{
	Name:   "canary-spends-canary-accounts",
	Why:    "Flagger's acceptance and load tests must spend canary accounts (" + canaryPrefix + "…) only, never a customer's money",
	Broken: mutate(minikube, "Canary", "bank", webhookMeta(0, "cmd", strings.NewReplacer("CANARY-000001", "ACC-000001"))),
	Check: func(s *Set, r *Report) {
		eachWebhook(s, func(cn *flaggerv1.Canary, w flaggerv1.CanaryWebhook, field string, meta map[string]string) {
			refs := webhookAccounts(meta)
			for _, a := range refs {
				if a.prefix != canaryPrefix {
					r.Add(id("Canary", cn.Namespace, cn.Name), field, "webhook %s names %s, not a canary account: canary traffic must spend %s… accounts only (bank seed --canary-accounts)", w.Name, a.text, canaryPrefix)
				}
			}
			if len(refs) == 0 && postsMoney(meta) {
				r.Add(id("Canary", cn.Namespace, cn.Name), field, "webhook %s posts transactions or purchases but names no account: name the %s… accounts it spends", w.Name, canaryPrefix)
			}
		})
	},
}, {
	Name:   "canary-accounts-exist",
	Why:    "every account a canary webhook spends must be created by a bank seed Job of the same set, or each check is declined unknown_account",
	Broken: mutate(production, "Job", "bank-canary-accounts", container0(func(c map[string]any) { c["args"] = replaceArg(c["args"], "--canary-accounts", "5") })),
	Check: func(s *Set, r *Report) {
		seeded := seededAccounts(s)
		eachWebhook(s, func(cn *flaggerv1.Canary, w flaggerv1.CanaryWebhook, field string, meta map[string]string) {
			for _, a := range webhookAccounts(meta) {
				switch {
				case a.upTo < 0:
					r.Add(id("Canary", cn.Namespace, cn.Name), field, "webhook %s spends %s… accounts built as %s, over a range this rule cannot read: write it as $(( (i %% N) + 1 ))", w.Name, a.prefix, a.text)
				case a.upTo > seeded[a.prefix]:
					r.Add(id("Canary", cn.Namespace, cn.Name), field, "webhook %s spends %s (up to %s%06d), but the set's bank seed Jobs create %s… accounts only up to %d (%s)", w.Name, a.text, a.prefix, a.upTo, a.prefix, seeded[a.prefix], seedFlag[a.prefix])
				}
			}
		})
	},
}, {
	Name: "http-ratios-count-the-api",
	Why: "an error ratio over <svc>_http_requests_total must select the API's routes (route=~\"/v1/…\"): probes and scrapes are " +
		"counted there too, and a canary pod's /readyz 503s during a database hiccup failed a release that served every API call",
	Broken: mutate(minikube, "MetricTemplate", "bank-5xx-ratio", func(m map[string]any) {
		q, _, _ := unstructured.NestedString(m, "spec", "query")
		_ = unstructured.SetNestedField(m, strings.ReplaceAll(q, `route=~"/v1/.+", `, ""), "spec", "query")
	}),
	Check: func(s *Set, r *Report) {
		check := func(obj, field, q string) {
			for _, sel := range httpRequestsSelector.FindAllStringSubmatch(q, -1) {
				if !strings.Contains(sel[1], `route=~"/v1/`) {
					r.Add(obj, field, "%s_http_requests_total{%s} counts every route, probes and scrapes included: select route=~\"/v1/.+\"", sel[0][:strings.Index(sel[0], "_http")], sel[1])
				}
			}
		}
		for _, o := range s.kind("MetricTemplate") {
			q, _, _ := unstructured.NestedString(o.U.Object, "spec", "query")
			check(o.ID(), "spec.query", q)
		}
		for _, o := range s.kind("PrometheusRule") {
			groups, _, _ := unstructured.NestedSlice(o.U.Object, "spec", "groups")
			for i, g := range groups {
				rules, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
				for j, rl := range rules {
					e, _, _ := unstructured.NestedFieldNoCopy(rl.(map[string]any), "expr")
					if q, ok := e.(string); ok {
						check(o.ID(), fmt.Sprintf("spec.groups[%d].rules[%d].expr", i, j), q)
					}
				}
			}
		}
	},
}}

// httpRequestsSelector is a selector on a service's request counter (web.NewEngine), with its matchers; it
// ends at a brace followed by a range, a parenthesis or a space, not at Flagger's {{ namespace }}.
var httpRequestsSelector = regexp.MustCompile(`\w+_http_requests_total\{(.*?)\}(?:[\[)\s]|$)`)

// canaryPrefix starts every canary account's id (the main module's payment.CanaryAccountPrefix); customer
// accounts are ACC-000001… (bank.AccountID).
const canaryPrefix = "CANARY-"

// seedFlag is the `bank seed` flag that creates the accounts of a prefix, and its default.
var seedFlag = map[string]string{"ACC-": "--accounts", canaryPrefix: "--canary-accounts"}

var seedDefault = map[string]int{"ACC-": 100, canaryPrefix: 0}

// accountRef is an account, or a family of them, that a webhook's metadata names.
type accountRef struct {
	text   string // as written: ACC-000001, CANARY-%06d, ACC-$n
	prefix string // up to and with the dash: ACC-, CANARY-
	upTo   int    // the highest account number it can reach; -1: cannot tell
}

var (
	// An account id (ACC-000001), a printf format of one (CANARY-%06d) or one built from a shell variable
	// (ACC-$n, ACC-00000$n, ACC-${n}).
	accountRE = regexp.MustCompile(`\b([A-Z][A-Z0-9]*-)(\d{6}\b|\d*%0?\d*d|\d*\$)`)
	// The range of a printf'd account number: $(( (i % N) + 1 )).
	moduloRE = regexp.MustCompile(`\$\(\(\s*\(?\s*\$?\w+\s*%\s*(\d+)\s*\)?\s*\+\s*1\s*\)\)`)
	// A request that creates a transaction or a purchase.
	postRE = regexp.MustCompile(`/v1/(transactions|purchases)\b`)
)

// webhookAccounts returns the accounts a webhook's metadata names (the load tester's cmd, the e2e harness's
// accounts), in key order.
func webhookAccounts(meta map[string]string) []accountRef {
	var out []accountRef
	for _, k := range slices.Sorted(maps.Keys(meta)) {
		v := meta[k]
		for _, m := range accountRE.FindAllStringSubmatch(v, -1) {
			a := accountRef{text: m[0], prefix: m[1], upTo: -1}
			switch {
			case strings.Contains(m[2], "%"):
				if mod := moduloRE.FindStringSubmatch(v); mod != nil {
					a.upTo, _ = strconv.Atoi(mod[1])
				}
			case !strings.Contains(m[2], "$"):
				a.upTo, _ = strconv.Atoi(m[2])
			}
			out = append(out, a)
		}
	}
	return out
}

// postsMoney: a metadata value sends a transaction or a purchase (a POST with a body to /v1/transactions or
// /v1/purchases).
func postsMoney(meta map[string]string) bool {
	for _, v := range meta {
		if postRE.MatchString(v) && (strings.Contains(v, "POST") || strings.Contains(v, " -d ") ||
			strings.Contains(v, "--data")) {
			return true
		}
	}
	return false
}

// eachWebhook calls f with each webhook of each Canary of the set, its field path and its metadata.
func eachWebhook(s *Set, f func(cn *flaggerv1.Canary, w flaggerv1.CanaryWebhook, field string, meta map[string]string)) {
	for _, cn := range canaries(s) {
		if cn.Spec.Analysis == nil {
			continue
		}
		for i, w := range cn.Spec.Analysis.Webhooks {
			meta := map[string]string{}
			if w.Metadata != nil {
				meta = *w.Metadata
			}
			f(cn, w, fmt.Sprintf("spec.analysis.webhooks[%d].metadata", i), meta)
		}
	}
}

// seededAccounts returns, per account prefix, the highest account number the set's `bank seed` Jobs create
// (1…N of --accounts and --canary-accounts).
func seededAccounts(s *Set) map[string]int {
	out := map[string]int{}
	for _, t := range podTemplates(s) {
		for _, c := range t.Spec.Containers {
			if len(c.Args) < 2 || path.Base(c.Args[0]) != "bank" || !slices.Contains(c.Args, "seed") {
				continue
			}
			for prefix, flag := range seedFlag {
				n := seedDefault[prefix]
				for i, a := range c.Args {
					switch {
					case a == flag && i+1 < len(c.Args):
						n, _ = strconv.Atoi(c.Args[i+1])
					case strings.HasPrefix(a, flag+"="):
						n, _ = strconv.Atoi(strings.TrimPrefix(a, flag+"="))
					}
				}
				out[prefix] = max(out[prefix], n)
			}
		}
	}
	return out
}

// webhookMeta rewrites one metadata value of the i-th webhook of a Canary (a strings.Replacer, or a
// func(string) string).
func webhookMeta(i int, key string, r interface{ Replace(string) string }) func(map[string]any) {
	return func(m map[string]any) {
		ws, _, _ := unstructured.NestedSlice(m, "spec", "analysis", "webhooks")
		meta := ws[i].(map[string]any)["metadata"].(map[string]any)
		meta[key] = r.Replace(meta[key].(string))
		_ = unstructured.SetNestedSlice(m, ws, "spec", "analysis", "webhooks")
	}
}

// to replaces a whole value (for webhookMeta).
type to string

func (t to) Replace(string) string { return string(t) }

// replaceArg sets the value that follows flag in a container's args.
func replaceArg(args any, flag, value string) []any {
	out := slices.Clone(args.([]any))
	for i, a := range out {
		if a == flag && i+1 < len(out) {
			out[i+1] = value
		}
	}
	return out
}
