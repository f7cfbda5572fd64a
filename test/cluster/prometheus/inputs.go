package prometheus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// An alert rule reads series by their labels: promtool and the rule tests feed it series labelled as the
// tests' author believed the exporters label them. Inputs and CheckInputs ask a running Prometheus instead:
// its own parser says which selectors each rule reads and which labels the rule takes from their series
// (grouping, `on` matching, label_replace's source), and its series say whether the exporters, as scraped,
// give them.

// Rule is one alert of a rule file.
type Rule struct {
	Alert string
	Expr  string
}

// Alerts reads the alerting rules of a Prometheus rule file (Rules).
func Alerts(rules []byte) ([]Rule, error) {
	var file struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(rules, &file); err != nil {
		return nil, err
	}
	var out []Rule
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, Rule{Alert: r.Alert, Expr: r.Expr})
			}
		}
	}
	return out, nil
}

// Getter GETs a path of Prometheus's HTTP API (/api/v1/…) with its query parameters and returns the body,
// also of an error answer (Prometheus explains its 4xx in JSON).
type Getter func(ctx context.Context, path string, q url.Values) ([]byte, error)

// apiGet calls the API and returns the envelope's data.
func apiGet(ctx context.Context, get Getter, path string, q url.Values) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	b, err := get(ctx, path, q)
	var env struct {
		Status    string          `json:"status"`
		Data      json.RawMessage `json:"data"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
	}
	if jerr := json.Unmarshal(b, &env); jerr != nil {
		return nil, errors.Join(err, fmt.Errorf("%s: answer not JSON: %w", path, jerr))
	}
	if env.Status != "success" {
		return nil, fmt.Errorf("%s: %s: %s", path, env.ErrorType, env.Error)
	}
	return env.Data, nil
}

// Matcher is one label matcher of a selector, as the parser gives it (the metric name is __name__).
type Matcher struct {
	Name  string `json:"name"`
	Type  string `json:"type"` // =, !=, =~, !~
	Value string `json:"value"`
}

// Input is one selector an alert rule reads and the labels the rule takes from its series.
type Input struct {
	Alert    string
	Matchers []Matcher
	Labels   []string // sorted
}

// Selector is the input's selector in PromQL.
func (in Input) Selector() string { return selector(in.Matchers) }

// selector writes name{label="value", …} (the name as the parser gives it: matcher __name__).
func selector(ms []Matcher) string {
	name, parts := "", make([]string, 0, len(ms))
	for _, m := range ms {
		if m.Name == "__name__" && m.Type == "=" && name == "" {
			name = m.Value
			continue
		}
		parts = append(parts, m.Name+m.Type+strconv.Quote(m.Value))
	}
	return name + "{" + strings.Join(parts, ", ") + "}"
}

// Inputs asks Prometheus's parser (/api/v1/parse_query) for the syntax tree of each rule's expression and
// returns what the rules read.
func Inputs(ctx context.Context, get Getter, rules []Rule) ([]Input, error) {
	var out []Input
	for _, r := range rules {
		data, err := apiGet(ctx, get, "/api/v1/parse_query", url.Values{"query": {r.Expr}})
		if err != nil {
			return nil, fmt.Errorf("alert %s: %w", r.Alert, err)
		}
		var tree map[string]any
		if err := json.Unmarshal(data, &tree); err != nil {
			return nil, fmt.Errorf("alert %s: syntax tree: %w", r.Alert, err)
		}
		ins, err := walk(tree, nil)
		if err != nil {
			return nil, fmt.Errorf("alert %s: %w", r.Alert, err)
		}
		for i := range ins {
			ins[i].Alert = r.Alert
		}
		out = append(out, ins...)
	}
	return out, nil
}

// walk collects the selectors under node; need is the labels the nodes above it take from its result.
func walk(node map[string]any, need []string) ([]Input, error) {
	if node == nil {
		return nil, nil
	}
	child := func(key string, need []string) ([]Input, error) {
		n, _ := node[key].(map[string]any)
		return walk(n, need)
	}
	switch t, _ := node["type"].(string); t {
	case "vectorSelector", "matrixSelector":
		b, err := json.Marshal(node["matchers"])
		if err != nil {
			return nil, err
		}
		var ms []Matcher
		if err := json.Unmarshal(b, &ms); err != nil {
			return nil, fmt.Errorf("matchers: %w", err)
		}
		return []Input{{Matchers: ms, Labels: set(need)}}, nil
	case "aggregation":
		// The result has the grouping labels only (by), or the input's but those (without).
		grouping := strs(node["grouping"])
		if without, _ := node["without"].(bool); without {
			grouping = slices.DeleteFunc(slices.Clone(need), func(l string) bool { return slices.Contains(grouping, l) })
		}
		ins, err := child("expr", grouping)
		if err != nil {
			return nil, err
		}
		p, err := child("param", nil)
		return append(ins, p...), err
	case "binaryExpr":
		// What each side's labels become in the result (a scalar side has none to give).
		lhs, rhs := need, need
		if m, _ := node["matching"].(map[string]any); m != nil {
			var on []string
			if o, _ := m["on"].(bool); o {
				on = strs(m["labels"])
			}
			union := func(a, b []string) []string { return append(slices.Clone(a), b...) }
			switch op, _ := node["op"].(string); {
			case op == "and" || op == "unless": // the left side's series, filtered by the right side's
				lhs, rhs = union(need, on), on
			case op == "or":
			case m["card"] == "many-to-one": // the left side's labels, and the included ones from the right
				lhs, rhs = union(need, on), union(on, strs(m["include"]))
			case m["card"] == "one-to-many":
				lhs, rhs = union(on, strs(m["include"])), union(need, on)
			case len(on) > 0: // one-to-one on (…): the result has those labels only
				lhs, rhs = on, on
			default: // one-to-one ignoring (…): the result has the others
				ignored := strs(m["labels"])
				lhs = slices.DeleteFunc(slices.Clone(need), func(l string) bool { return slices.Contains(ignored, l) })
				rhs = lhs
			}
		}
		l, err := child("lhs", lhs)
		if err != nil {
			return nil, err
		}
		r, err := child("rhs", rhs)
		return append(l, r...), err
	case "call":
		fn, _ := node["func"].(map[string]any)
		args, _ := node["args"].([]any)
		argNeed := need
		switch name, _ := fn["name"].(string); name {
		case "label_replace", "label_join":
			// label_replace(v, dst, replacement, src, regex), label_join(v, dst, separator, src...): dst comes
			// from the sources.
			dst, srcs := literal(args, 1), []string{literal(args, 3)}
			if name == "label_join" {
				srcs = nil
				for i := 3; i < len(args); i++ {
					srcs = append(srcs, literal(args, i))
				}
			}
			argNeed = append(slices.DeleteFunc(slices.Clone(need), func(l string) bool { return l == dst }), srcs...)
		}
		var out []Input
		for _, a := range args {
			n, _ := a.(map[string]any)
			ins, err := walk(n, argNeed)
			if err != nil {
				return nil, err
			}
			out = append(out, ins...)
		}
		return out, nil
	case "parenExpr", "unaryExpr", "subquery":
		return child("expr", need)
	case "numberLiteral", "stringLiteral", "durationExpr":
		return nil, nil
	default:
		return nil, fmt.Errorf("a syntax tree node of type %q this walk does not know", t)
	}
}

func literal(args []any, i int) string {
	if i >= len(args) {
		return ""
	}
	n, _ := args[i].(map[string]any)
	s, _ := n["val"].(string)
	return s
}

func strs(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, s := range l {
		if s, ok := s.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func set(l []string) []string {
	out := slices.Clone(l)
	slices.Sort(out)
	return slices.Compact(out)
}

// Seen is what Prometheus's series say of one input over a window.
type Seen struct {
	Input
	// Series matching the selector. None: the rule's event has not happened (a 5xx, say); Relaxed then
	// counts the series of the selector with its regular-expression matchers reduced to the label's presence
	// and its negative ones dropped: the label exists, its value did not occur.
	Series, Relaxed int
	// Missing: labels the rule takes that some of those series lack.
	Missing []string
}

// OK reports whether the series exist (or their relaxed form does) and carry every label the rule takes.
func (s Seen) OK() bool { return (s.Series > 0 || s.Relaxed > 0) && len(s.Missing) == 0 }

func (s Seen) String() string {
	msg := fmt.Sprintf("%s reads %s", s.Alert, s.Selector())
	switch {
	case s.Series > 0:
		msg += fmt.Sprintf(": %d series", s.Series)
	case s.Relaxed > 0:
		msg += fmt.Sprintf(": none yet, %d with the labels (%s)", s.Relaxed, selector(relaxed(s.Matchers)))
	default:
		msg += ": no series"
	}
	if len(s.Missing) > 0 {
		msg += fmt.Sprintf(", without %s (the rule takes %s)", strings.Join(s.Missing, ", "),
			strings.Join(s.Labels, ", "))
	}
	return msg
}

// relaxed keeps the equality matchers, makes the regular-expression ones "the label is set" and drops the
// negative ones.
func relaxed(ms []Matcher) []Matcher {
	var out []Matcher
	for _, m := range ms {
		switch m.Type {
		case "=":
			out = append(out, m)
		case "=~":
			out = append(out, Matcher{Name: m.Name, Type: "=~", Value: ".+"})
		}
	}
	return out
}

// CheckInputs asks Prometheus for each input's series between start and end (/api/v1/series).
func CheckInputs(ctx context.Context, get Getter, inputs []Input, start, end time.Time) ([]Seen, error) {
	series := func(ms []Matcher) ([]map[string]string, error) {
		data, err := apiGet(ctx, get, "/api/v1/series", url.Values{"match[]": {selector(ms)},
			"start": {strconv.FormatInt(start.Unix(), 10)}, "end": {strconv.FormatInt(end.Unix(), 10)}})
		if err != nil {
			return nil, err
		}
		var out []map[string]string
		return out, json.Unmarshal(data, &out)
	}
	var out []Seen
	for _, in := range inputs {
		s := Seen{Input: in}
		found, err := series(in.Matchers)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", in.Alert, err)
		}
		s.Series = len(found)
		if len(found) == 0 {
			if found, err = series(relaxed(in.Matchers)); err != nil {
				return nil, fmt.Errorf("%s: %w", in.Alert, err)
			}
			s.Relaxed = len(found)
		}
		for _, l := range in.Labels {
			for _, f := range found {
				if f[l] == "" {
					s.Missing = append(s.Missing, l)
					break
				}
			}
		}
		out = append(out, s)
	}
	return out, nil
}
