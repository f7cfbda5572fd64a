package manifests

import (
	"fmt"
)

// Check runs the per-object layers (strict decoding, CRD schema + CEL) over objs and returns one message per
// problem, prefixed with the object and where it was rendered from.
func Check(objs []Object) []string {
	var out []string
	for _, o := range objs {
		if _, err := Decode(o); err != nil {
			out = append(out, fmt.Sprintf("%s (%s): decode: %v", o.ID(), o.Source, err))
		}
		handled, errs := ValidateCR(o)
		for _, e := range errs {
			out = append(out, fmt.Sprintf("%s (%s): schema: %v", o.ID(), o.Source, e))
		}
		if !handled && isCustom(o) {
			out = append(out, fmt.Sprintf("%s (%s): no upstream CRD found for %s", o.ID(), o.Source, o.GVK()))
		}
	}
	return out
}

func isCustom(o Object) bool {
	switch o.GVK().Group {
	case "", "apps", "batch", "autoscaling", "policy", "networking.k8s.io", "rbac.authorization.k8s.io":
		return false
	}
	return true
}
