package manifests

import (
	"encoding/json"
	"errors"
	"fmt"

	cnpgv1 "github.com/cloudnative-pg/api/pkg/api/v1"
	flaggerv1 "github.com/fluxcd/flagger/pkg/apis/flagger/v1beta1"
	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	imageautov1 "github.com/fluxcd/image-automation-controller/api/v1"
	imagev1 "github.com/fluxcd/image-reflector-controller/api/v1"
	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	netv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	sigsjson "sigs.k8s.io/json"
)

// typed maps every kind the repository may contain to a constructor of its upstream Go type.
var typed = map[schema.GroupVersionKind]func() any{
	gvk("", "v1", "Namespace"):                                    func() any { return &corev1.Namespace{} },
	gvk("", "v1", "ServiceAccount"):                               func() any { return &corev1.ServiceAccount{} },
	gvk("", "v1", "ConfigMap"):                                    func() any { return &corev1.ConfigMap{} },
	gvk("", "v1", "Secret"):                                       func() any { return &corev1.Secret{} },
	gvk("", "v1", "Service"):                                      func() any { return &corev1.Service{} },
	gvk("apps", "v1", "Deployment"):                               func() any { return &appsv1.Deployment{} },
	gvk("batch", "v1", "Job"):                                     func() any { return &batchv1.Job{} },
	gvk("autoscaling", "v2", "HorizontalPodAutoscaler"):           func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	gvk("policy", "v1", "PodDisruptionBudget"):                    func() any { return &policyv1.PodDisruptionBudget{} },
	gvk("networking.k8s.io", "v1", "NetworkPolicy"):               func() any { return &netv1.NetworkPolicy{} },
	gvk("rbac.authorization.k8s.io", "v1", "Role"):                func() any { return &rbacv1.Role{} },
	gvk("rbac.authorization.k8s.io", "v1", "RoleBinding"):         func() any { return &rbacv1.RoleBinding{} },
	gvk("flagger.app", "v1beta1", "Canary"):                       func() any { return &flaggerv1.Canary{} },
	gvk("flagger.app", "v1beta1", "MetricTemplate"):               func() any { return &flaggerv1.MetricTemplate{} },
	gvk("postgresql.cnpg.io", "v1", "Cluster"):                    func() any { return &cnpgv1.Cluster{} },
	gvk("postgresql.cnpg.io", "v1", "Pooler"):                     func() any { return &cnpgv1.Pooler{} },
	gvk("postgresql.cnpg.io", "v1", "ScheduledBackup"):            func() any { return &cnpgv1.ScheduledBackup{} },
	gvk("monitoring.coreos.com", "v1", "PodMonitor"):              func() any { return &monitoringv1.PodMonitor{} },
	gvk("monitoring.coreos.com", "v1", "ServiceMonitor"):          func() any { return &monitoringv1.ServiceMonitor{} },
	gvk("monitoring.coreos.com", "v1", "PrometheusRule"):          func() any { return &monitoringv1.PrometheusRule{} },
	gvk("kustomize.toolkit.fluxcd.io", "v1", "Kustomization"):     func() any { return &kustomizev1.Kustomization{} },
	gvk("source.toolkit.fluxcd.io", "v1", "GitRepository"):        func() any { return &sourcev1.GitRepository{} },
	gvk("source.toolkit.fluxcd.io", "v1", "HelmRepository"):       func() any { return &sourcev1.HelmRepository{} },
	gvk("source.toolkit.fluxcd.io", "v1", "OCIRepository"):        func() any { return &sourcev1.OCIRepository{} },
	gvk("helm.toolkit.fluxcd.io", "v2", "HelmRelease"):            func() any { return &helmv2.HelmRelease{} },
	gvk("image.toolkit.fluxcd.io", "v1", "ImageRepository"):       func() any { return &imagev1.ImageRepository{} },
	gvk("image.toolkit.fluxcd.io", "v1", "ImagePolicy"):           func() any { return &imagev1.ImagePolicy{} },
	gvk("image.toolkit.fluxcd.io", "v1", "ImageUpdateAutomation"): func() any { return &imageautov1.ImageUpdateAutomation{} },
}

// istioSpecs maps Istio kinds to their protobuf spec message: client-go's generated UnmarshalJSON accepts
// unknown fields, so the spec is decoded again with protojson, which does not.
var istioSpecs = map[schema.GroupVersionKind]func() proto.Message{
	gvk("networking.istio.io", "v1", "VirtualService"):    func() proto.Message { return &(&networkingv1.VirtualService{}).Spec },
	gvk("networking.istio.io", "v1", "DestinationRule"):   func() proto.Message { return &(&networkingv1.DestinationRule{}).Spec },
	gvk("networking.istio.io", "v1", "Sidecar"):           func() proto.Message { return &(&networkingv1.Sidecar{}).Spec },
	gvk("networking.istio.io", "v1", "Gateway"):           func() proto.Message { return &(&networkingv1.Gateway{}).Spec },
	gvk("security.istio.io", "v1", "PeerAuthentication"):  func() proto.Message { return &(&securityv1.PeerAuthentication{}).Spec },
	gvk("security.istio.io", "v1", "AuthorizationPolicy"): func() proto.Message { return &(&securityv1.AuthorizationPolicy{}).Spec },
}

// schemaOnly lists kinds whose upstream Go API cannot be built from the module proxy here (its module
// requires a version the proxy refuses); they are checked by their CRD schema alone (pruning reports unknown
// fields, so the schema layer is as strict as decoding for them).
var schemaOnly = map[schema.GroupVersionKind]bool{
	gvk("barmancloud.cnpg.io", "v1", "ObjectStore"): true,
}

func gvk(g, v, k string) schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: g, Version: v, Kind: k}
}

// Decode strictly decodes o into its upstream Go type and returns the typed value (nil for schema-only kinds).
// Unknown fields, duplicate fields, case-mismatched fields and wrong types are errors.
func Decode(o Object) (any, error) {
	data, err := json.Marshal(o.U.Object)
	if err != nil {
		return nil, err
	}
	k := o.GVK()
	if mk, ok := istioSpecs[k]; ok {
		var env struct {
			metav1.TypeMeta   `json:",inline"`
			metav1.ObjectMeta `json:"metadata"`
			Spec              json.RawMessage `json:"spec"`
		}
		if err := strict(data, &env); err != nil {
			return nil, err
		}
		msg := mk()
		if err := (protojson.UnmarshalOptions{}).Unmarshal(env.Spec, msg); err != nil {
			return nil, fmt.Errorf("spec: %w", err)
		}
		return msg, nil
	}
	if schemaOnly[k] {
		return nil, nil
	}
	mk, ok := typed[k]
	if !ok {
		return nil, fmt.Errorf("no upstream Go type registered for %s: add it to decode.go", k)
	}
	v := mk()
	if err := strict(data, v); err != nil {
		return nil, err
	}
	return v, nil
}

func strict(data []byte, v any) error {
	strictErrs, err := sigsjson.UnmarshalStrict(data, v, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}
