package manifests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	apiextensionsinternal "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
)

// CRDSource says where an upstream CRD file lives: in module Module, at the version the build list of this
// module selects for VersionOf (go.mod pins it), or at Version when the module's Go API cannot be required here.
type CRDSource struct {
	Module    string
	VersionOf string
	Version   string
	Files     []string // globs relative to the module root
}

// CRDSources are resolved through the module cache (`go mod download -json`), never copied into the repo.
var CRDSources = []CRDSource{
	{Module: "github.com/fluxcd/flagger", VersionOf: "github.com/fluxcd/flagger", Files: []string{"artifacts/flagger/crd.yaml"}},
	{Module: "istio.io/api", VersionOf: "istio.io/api", Files: []string{"kubernetes/customresourcedefinitions.gen.yaml"}},
	{Module: "github.com/cloudnative-pg/cloudnative-pg", VersionOf: "github.com/cloudnative-pg/api", Files: []string{"config/crd/bases/*.yaml"}},
	{Module: "github.com/prometheus-operator/prometheus-operator", VersionOf: "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring", Files: []string{"example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml", "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml", "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"}},
	{Module: "github.com/fluxcd/kustomize-controller", VersionOf: "github.com/fluxcd/kustomize-controller/api", Files: []string{"config/crd/bases/*.yaml"}},
	{Module: "github.com/fluxcd/source-controller", VersionOf: "github.com/fluxcd/source-controller/api", Files: []string{"config/crd/bases/*.yaml"}},
	{Module: "github.com/fluxcd/helm-controller", VersionOf: "github.com/fluxcd/helm-controller/api", Files: []string{"config/crd/bases/*.yaml"}},
	{Module: "github.com/fluxcd/image-reflector-controller", VersionOf: "github.com/fluxcd/image-reflector-controller/api", Files: []string{"config/crd/bases/*.yaml"}},
	{Module: "github.com/fluxcd/image-automation-controller", VersionOf: "github.com/fluxcd/image-automation-controller/api", Files: []string{"config/crd/bases/*.yaml"}},
	// Its api package needs github.com/cloudnative-pg/barman-cloud@v0.6.0, which the module proxy refuses,
	// so the version is pinned here; keep it in step with the plugin-barman-cloud HelmRelease.
	{Module: "github.com/cloudnative-pg/plugin-barman-cloud", Version: "v0.15.0", Files: []string{"config/crd/bases/*.yaml"}},
}

// CRDVersion is one served version of a CRD, ready to validate objects.
type CRDVersion struct {
	Source     string
	Structural *structuralschema.Structural
	Validator  apiservervalidation.SchemaValidator
	CEL        *cel.Validator
}

var (
	crdOnce sync.Once
	crdSet  map[schema.GroupVersionKind]*CRDVersion
	crdErr  error
)

// CRDs loads every upstream CRD once.
func CRDs() (map[schema.GroupVersionKind]*CRDVersion, error) {
	crdOnce.Do(func() { crdSet, crdErr = loadCRDs() })
	return crdSet, crdErr
}

func moduleDir(mod, version string) (string, error) {
	arg := mod
	if version != "" {
		arg = mod + "@" + version
	}
	cmd := exec.Command("go", "mod", "download", "-json", arg)
	cmd.Dir = filepath.Join(RepoRoot(), "test", "manifests")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	_ = json.Unmarshal(out, &info)
	if err != nil || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %w %s %s", arg, err, info.Error, stderr.String())
	}
	return info.Dir, nil
}

// ModuleVersion returns the version the build list selects for mod.
func ModuleVersion(mod string) (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Version}}", mod)
	cmd.Dir = filepath.Join(RepoRoot(), "test", "manifests")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list -m %s: %w", mod, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func loadCRDs() (map[schema.GroupVersionKind]*CRDVersion, error) {
	set := map[schema.GroupVersionKind]*CRDVersion{}
	for _, src := range CRDSources {
		version := src.Version
		if version == "" {
			v, err := ModuleVersion(src.VersionOf)
			if err != nil {
				return nil, err
			}
			version = v
		}
		dir, err := moduleDir(src.Module, version)
		if err != nil {
			return nil, err
		}
		for _, pattern := range src.Files {
			files, err := filepath.Glob(filepath.Join(dir, pattern))
			if err != nil || len(files) == 0 {
				return nil, fmt.Errorf("%s@%s: no CRD file matches %s", src.Module, version, pattern)
			}
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					return nil, err
				}
				label := src.Module + "@" + version + "/" + strings.TrimPrefix(f, dir+"/")
				if err := addCRDs(set, label, data); err != nil {
					return nil, err
				}
			}
		}
	}
	return set, nil
}

func addCRDs(set map[schema.GroupVersionKind]*CRDVersion, label string, data []byte) error {
	docs, err := ParseYAML(label, data)
	if err != nil {
		return err
	}
	for _, d := range docs {
		if d.U.GetKind() != "CustomResourceDefinition" {
			continue
		}
		raw, _ := json.Marshal(d.U.Object)
		var crd apiextensionsv1.CustomResourceDefinition
		if err := json.Unmarshal(raw, &crd); err != nil {
			return fmt.Errorf("%s: %w", label, err)
		}
		for _, v := range crd.Spec.Versions {
			if !v.Served || v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				continue
			}
			var internal apiextensionsinternal.JSONSchemaProps
			if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
				return fmt.Errorf("%s %s: %w", label, crd.Name, err)
			}
			st, err := structuralschema.NewStructural(&internal)
			if err != nil {
				return fmt.Errorf("%s %s/%s: not a structural schema: %w", label, crd.Name, v.Name, err)
			}
			validator, _, err := apiservervalidation.NewSchemaValidator(&internal)
			if err != nil {
				return fmt.Errorf("%s %s/%s: %w", label, crd.Name, v.Name, err)
			}
			k := schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind}
			set[k] = &CRDVersion{
				Source:     label,
				Structural: st,
				Validator:  validator,
				CEL:        cel.NewValidator(st, true, celconfig.PerCallLimit),
			}
		}
	}
	return nil
}

// ValidateCR validates a custom resource as the API server would on create: defaulting, unknown fields
// (pruning), OpenAPI schema, then CEL rules (x-kubernetes-validations).
func ValidateCR(o Object) (handled bool, errs []error) {
	set, err := CRDs()
	if err != nil {
		return true, []error{err}
	}
	c, ok := set[o.GVK()]
	if !ok {
		return false, nil
	}
	obj := runtime.DeepCopyJSON(o.U.Object)
	structuraldefaulting.Default(obj, c.Structural)
	pruned := structuralpruning.PruneWithOptions(runtime.DeepCopyJSON(obj), c.Structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	for _, p := range pruned {
		errs = append(errs, fmt.Errorf("unknown field %q (not in %s)", p, c.Source))
	}
	for _, e := range apiservervalidation.ValidateCustomResource(nil, obj, c.Validator) {
		errs = append(errs, e)
	}
	if c.CEL != nil {
		celErrs, _ := c.CEL.Validate(context.Background(), nil, c.Structural, obj, nil, celconfig.RuntimeCELCostBudget)
		for _, e := range celErrs {
			errs = append(errs, fmt.Errorf("CEL: %w", e))
		}
	}
	return true, errs
}
