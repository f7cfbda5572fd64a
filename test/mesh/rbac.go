package mesh

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	uritemplate "github.com/envoyproxy/go-control-plane/envoy/extensions/path/match/uri_template/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// Request is what an Envoy RBAC filter sees of an inbound request on the sidecar of the called pod.
type Request struct {
	Principal string // the caller's certificate URI SAN ("" over plaintext)
	Method    string
	Path      string // without a query
	Port      uint32 // the destination (app) port
}

func (r Request) String() string {
	p := r.Principal
	if p == "" {
		p = "(no identity)"
	}
	return fmt.Sprintf("%s %s :%d from %s", r.Method, r.Path, r.Port, p)
}

// Decision of one RBAC filter.
type Decision struct {
	Allowed bool
	Policy  string // the policy that matched ("" when none did)
}

// Evaluate decides req the way Envoy's RBAC filter does with rules (envoy.config.rbac.v3.RBAC): ALLOW lets
// a request through when a policy matches it, DENY stops it when one does, LOG never stops it. A policy
// matches when one of its permissions and one of its principals match. Only what a request of this model
// can carry is implemented; anything else (a CEL condition, metadata, source addresses, ...) is an error, so
// that a configuration this evaluator cannot judge fails a test instead of passing it.
func Evaluate(rules *rbacv3.RBAC, req Request) (Decision, error) {
	names := make([]string, 0, len(rules.GetPolicies()))
	for n := range rules.GetPolicies() {
		names = append(names, n)
	}
	sort.Strings(names)
	matched := ""
	for _, n := range names {
		ok, err := policyMatches(rules.GetPolicies()[n], req)
		if err != nil {
			return Decision{}, fmt.Errorf("policy %s: %w", n, err)
		}
		if ok {
			matched = n
			break
		}
	}
	switch rules.GetAction() {
	case rbacv3.RBAC_ALLOW:
		return Decision{Allowed: matched != "", Policy: matched}, nil
	case rbacv3.RBAC_DENY:
		return Decision{Allowed: matched == "", Policy: matched}, nil
	case rbacv3.RBAC_LOG:
		return Decision{Allowed: true, Policy: matched}, nil
	}
	return Decision{}, fmt.Errorf("unsupported RBAC action %v", rules.GetAction())
}

func policyMatches(p *rbacv3.Policy, req Request) (bool, error) {
	if p.GetCondition() != nil || p.GetCheckedCondition() != nil {
		return false, fmt.Errorf("CEL conditions are not supported")
	}
	permitted := false
	for _, perm := range p.GetPermissions() {
		ok, err := permissionMatches(perm, req)
		if err != nil {
			return false, err
		}
		if ok {
			permitted = true
			break
		}
	}
	if !permitted {
		return false, nil
	}
	for _, pr := range p.GetPrincipals() {
		ok, err := principalMatches(pr, req)
		if err != nil {
			return false, err
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

func permissionMatches(p *rbacv3.Permission, req Request) (bool, error) {
	switch r := p.GetRule().(type) {
	case *rbacv3.Permission_Any:
		return r.Any, nil
	case *rbacv3.Permission_AndRules:
		for _, sub := range r.AndRules.GetRules() {
			ok, err := permissionMatches(sub, req)
			if err != nil || !ok {
				return false, err
			}
		}
		return true, nil
	case *rbacv3.Permission_OrRules:
		for _, sub := range r.OrRules.GetRules() {
			ok, err := permissionMatches(sub, req)
			if err != nil || ok {
				return ok, err
			}
		}
		return false, nil
	case *rbacv3.Permission_NotRule:
		ok, err := permissionMatches(r.NotRule, req)
		return !ok && err == nil, err
	case *rbacv3.Permission_Header:
		return headerMatches(r.Header, req)
	case *rbacv3.Permission_UrlPath:
		sm := r.UrlPath.GetPath()
		if sm == nil {
			return false, fmt.Errorf("url_path without a string matcher")
		}
		return stringMatches(sm, req.Path)
	case *rbacv3.Permission_UriTemplate:
		cfg := &uritemplate.UriTemplateMatchConfig{}
		if err := r.UriTemplate.GetTypedConfig().UnmarshalTo(cfg); err != nil {
			return false, fmt.Errorf("uri_template: %w", err)
		}
		return templateMatches(cfg.GetPathTemplate(), req.Path)
	case *rbacv3.Permission_DestinationPort:
		return r.DestinationPort == req.Port, nil
	case *rbacv3.Permission_DestinationPortRange:
		return int64(req.Port) >= int64(r.DestinationPortRange.GetStart()) &&
			int64(req.Port) < int64(r.DestinationPortRange.GetEnd()), nil
	}
	return false, fmt.Errorf("unsupported permission %T", p.GetRule())
}

func principalMatches(p *rbacv3.Principal, req Request) (bool, error) {
	switch id := p.GetIdentifier().(type) {
	case *rbacv3.Principal_Any:
		return id.Any, nil
	case *rbacv3.Principal_AndIds:
		for _, sub := range id.AndIds.GetIds() {
			ok, err := principalMatches(sub, req)
			if err != nil || !ok {
				return false, err
			}
		}
		return true, nil
	case *rbacv3.Principal_OrIds:
		for _, sub := range id.OrIds.GetIds() {
			ok, err := principalMatches(sub, req)
			if err != nil || ok {
				return ok, err
			}
		}
		return false, nil
	case *rbacv3.Principal_NotId:
		ok, err := principalMatches(id.NotId, req)
		return !ok && err == nil, err
	case *rbacv3.Principal_Authenticated_:
		if req.Principal == "" {
			return false, nil // no peer certificate
		}
		if id.Authenticated.GetPrincipalName() == nil {
			return true, nil // any authenticated peer
		}
		return stringMatches(id.Authenticated.GetPrincipalName(), req.Principal)
	case *rbacv3.Principal_Header:
		return headerMatches(id.Header, req)
	case *rbacv3.Principal_UrlPath:
		return stringMatches(id.UrlPath.GetPath(), req.Path)
	}
	return false, fmt.Errorf("unsupported principal %T", p.GetIdentifier())
}

// headerMatches supports the pseudo-headers a request of the model has (:method, :path).
func headerMatches(h *routev3.HeaderMatcher, req Request) (bool, error) {
	var value string
	switch h.GetName() {
	case ":method":
		value = req.Method
	case ":path":
		value = req.Path
	default:
		return false, fmt.Errorf("unsupported header %q", h.GetName())
	}
	var ok bool
	var err error
	switch m := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_StringMatch:
		ok, err = stringMatches(m.StringMatch, value)
	case *routev3.HeaderMatcher_PresentMatch:
		ok = m.PresentMatch
	default:
		return false, fmt.Errorf("unsupported header matcher %T", h.GetHeaderMatchSpecifier())
	}
	if err != nil {
		return false, err
	}
	return ok != h.GetInvertMatch(), nil
}

func stringMatches(m *matcherv3.StringMatcher, s string) (bool, error) {
	if m.GetIgnoreCase() {
		s = strings.ToLower(s)
	}
	lower := func(p string) string {
		if m.GetIgnoreCase() {
			return strings.ToLower(p)
		}
		return p
	}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return s == lower(p.Exact), nil
	case *matcherv3.StringMatcher_Prefix:
		return strings.HasPrefix(s, lower(p.Prefix)), nil
	case *matcherv3.StringMatcher_Suffix:
		return strings.HasSuffix(s, lower(p.Suffix)), nil
	case *matcherv3.StringMatcher_Contains:
		return strings.Contains(s, lower(p.Contains)), nil
	case *matcherv3.StringMatcher_SafeRegex:
		// Envoy's RE2 matches the whole string.
		re, err := regexp.Compile("^(?:" + p.SafeRegex.GetRegex() + ")$")
		if err != nil {
			return false, err
		}
		return re.MatchString(s), nil
	}
	return false, fmt.Errorf("unsupported string matcher %T", m.GetMatchPattern())
}

// templateMatches implements Envoy's uri_template path matcher (envoy.path.match.uri_template) for the
// operators it has: `*` (or a variable `{v}`, `{v=*}`) matches one non-empty path segment, `**` (`{v=**}`)
// any number of segments (only as the last one), anything else literally. Istio writes an
// AuthorizationPolicy's `{*}` as `*` and `{**}` as `**`.
func templateMatches(template, path string) (bool, error) {
	tsegs := strings.Split(strings.TrimPrefix(template, "/"), "/")
	psegs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for i, ts := range tsegs {
		if strings.HasPrefix(ts, "{") && strings.HasSuffix(ts, "}") {
			_, op, found := strings.Cut(strings.Trim(ts, "{}"), "=")
			ts = "*"
			if found {
				ts = op
			}
		}
		switch {
		case ts == "**":
			if i != len(tsegs)-1 {
				return false, fmt.Errorf("uri_template %q: ** not last", template)
			}
			return true, nil
		case i >= len(psegs):
			return false, nil
		case ts == "*":
			if psegs[i] == "" {
				return false, nil
			}
		case strings.ContainsAny(ts, "{}*"):
			return false, fmt.Errorf("uri_template %q: unsupported segment %q", template, ts)
		case ts != psegs[i]:
			return false, nil
		}
	}
	return len(tsegs) == len(psegs), nil
}
