package mesh

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	uritemplate "github.com/envoyproxy/go-control-plane/envoy/extensions/path/match/uri_template/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

func method(m string) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{Name: ":method",
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact(m)}}}}
}

func path(m *matcherv3.StringMatcher) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
		Rule: &matcherv3.PathMatcher_Path{Path: m}}}}
}

func template(t *testing.T, tmpl string) *rbacv3.Permission {
	cfg, err := anypb.New(&uritemplate.UriTemplateMatchConfig{PathTemplate: tmpl})
	if err != nil {
		t.Fatal(err)
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_UriTemplate{UriTemplate: &corev3.TypedExtensionConfig{
		Name: "uri-template", TypedConfig: cfg}}}
}

func and(ps ...*rbacv3.Permission) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: ps}}}
}

func or(ps ...*rbacv3.Permission) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: ps}}}
}

func principal(m *matcherv3.StringMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{
		Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m}}}
}

const storeID = "spiffe://cluster.local/ns/txmesh/sa/store"

func TestEvaluate(t *testing.T) {
	nsRegex := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{
		SafeRegex: &matcherv3.RegexMatcher{Regex: ".*/ns/loadtester/.*"}}}
	allowStore := &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{
		"store": {
			Permissions: []*rbacv3.Permission{
				and(method("POST"), or(path(exact("/v1/transactions")), path(exact("/v1/transactions/batch")))),
				and(method("GET"), template(t, "/v1/transactions/*")),
			},
			Principals: []*rbacv3.Principal{principal(exact(storeID))},
		},
		"loadtester": {
			Permissions: []*rbacv3.Permission{and(method("GET"), path(&matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "/v1/outbox"}}))},
			Principals: []*rbacv3.Principal{principal(nsRegex)},
		},
	}}
	denyNotGet := &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{
		"writes": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_NotRule{NotRule: method("GET")}}},
			Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
		},
	}}
	emptyAllow := &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW}
	for _, tc := range []struct {
		rules *rbacv3.RBAC
		req   Request
		want  bool
	}{
		{allowStore, Request{Principal: storeID, Method: "POST", Path: "/v1/transactions"}, true},
		{allowStore, Request{Principal: storeID, Method: "POST", Path: "/v1/transactions/batch"}, true},
		{allowStore, Request{Principal: storeID, Method: "POST", Path: "/v1/transactions/other"}, false},
		{allowStore, Request{Principal: storeID, Method: "GET", Path: "/v1/transactions"}, false},
		{allowStore, Request{Principal: storeID, Method: "GET", Path: "/v1/transactions/abc"}, true},
		{allowStore, Request{Principal: storeID, Method: "GET", Path: "/v1/transactions/abc/def"}, false},
		{allowStore, Request{Principal: storeID, Method: "GET", Path: "/v1/transactions/"}, false},
		{allowStore, Request{Principal: storeID, Method: "DELETE", Path: "/v1/transactions/abc"}, false},
		{allowStore, Request{Principal: storeID + "x", Method: "POST", Path: "/v1/transactions"}, false},
		{allowStore, Request{Principal: "", Method: "POST", Path: "/v1/transactions"}, false},
		{allowStore, Request{Principal: "spiffe://cluster.local/ns/loadtester/sa/x", Method: "GET", Path: "/v1/outbox"}, true},
		{allowStore, Request{Principal: "spiffe://cluster.local/ns/loadtester2/sa/x", Method: "GET", Path: "/v1/outbox"}, false},
		{allowStore, Request{Principal: "spiffe://cluster.local/ns/loadtester/sa/x", Method: "POST", Path: "/v1/outbox"}, false},
		{denyNotGet, Request{Principal: storeID, Method: "POST", Path: "/"}, false},
		{denyNotGet, Request{Principal: storeID, Method: "GET", Path: "/"}, true},
		{emptyAllow, Request{Principal: storeID, Method: "GET", Path: "/"}, false},
	} {
		d, err := Evaluate(tc.rules, tc.req)
		if err != nil {
			t.Fatalf("%s: %v", tc.req, err)
		}
		if d.Allowed != tc.want {
			t.Errorf("%v %s: allowed=%v (policy %q), want %v", tc.rules.GetAction(), tc.req, d.Allowed, d.Policy, tc.want)
		}
	}
}

// An RBAC configuration the evaluator cannot judge is an error, never a decision.
func TestEvaluateRefusesWhatItCannotJudge(t *testing.T) {
	for name, p := range map[string]*rbacv3.Policy{
		"source ip": {Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_DirectRemoteIp{
				DirectRemoteIp: &corev3.CidrRange{AddressPrefix: "10.0.0.0"}}}}},
		"other header": {Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Header{
			Header: &routev3.HeaderMatcher{Name: "x-user"}}}},
			Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}}},
	} {
		rules := &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{name: p}}
		if _, err := Evaluate(rules, Request{Principal: storeID, Method: "GET", Path: "/"}); err == nil ||
			!strings.Contains(err.Error(), "unsupported") {
			t.Errorf("%s: err = %v, want unsupported", name, err)
		}
	}
}
