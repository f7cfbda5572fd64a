package mesh

import (
	"context"
	"fmt"
	"sort"
	"strings"

	flaggerv1 "github.com/fluxcd/flagger/pkg/apis/flagger/v1beta1"
	"github.com/fluxcd/flagger/pkg/canary"
	flaggerfake "github.com/fluxcd/flagger/pkg/client/clientset/versioned/fake"
	"github.com/fluxcd/flagger/pkg/router"
	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
)

// Flagger's defaults, which the flagger HelmRelease (flux/infrastructure/controllers/base/flagger.yaml) keeps:
// the chart passes -selector-labels and -include-label-prefix only when its values set them, and they don't.
var (
	flaggerSelectorLabels     = strings.Split("app,name,app.kubernetes.io/name", ",")
	flaggerIncludeLabelPrefix = strings.Split("", ",")
)

// FlaggerState is the point of a Canary's life the generated objects belong to.
type FlaggerState struct {
	// CanaryWeight is the canary's share of the traffic (0: initialized, all on the primary; Flagger's
	// SetRoutes(100-w, w) during an analysis step otherwise).
	CanaryWeight int
}

// Generate runs Flagger's own code (pkg/canary's DeploymentController, pkg/router's KubernetesDefaultRouter
// and IstioRouter), against fake API clients, on every Canary of objs with the Istio provider, in the order
// Flagger's scheduler does for a new Canary (pkg/controller/scheduler.go, advanceCanary): canary and primary
// Services, the primary Deployment, the apex Service, then the DestinationRules and the VirtualService. It
// returns those objects as unstructured, with the VirtualService's routes set for state.
//
// Left out, as they make no mesh configuration: the config tracker (NopTracker: no -primary ConfigMaps), the
// HPA reconciler, metric checks and the pods' readiness (the Canary is marked Initialized, so Flagger does not
// wait for the primary to become ready).
func Generate(objs []*unstructured.Unstructured, state FlaggerState) ([]*unstructured.Unstructured, error) {
	kube := kubefake.NewSimpleClientset()
	flagger := flaggerfake.NewSimpleClientset()
	logger := zap.NewNop().Sugar()
	canaries := 0
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			d := &appsv1.Deployment{}
			if err := fromUnstructured(o, d); err != nil {
				return nil, err
			}
			if _, err := kube.AppsV1().Deployments(d.Namespace).Create(context.TODO(), d, metav1.CreateOptions{}); err != nil {
				return nil, err
			}
		}
	}
	for _, o := range objs {
		if o.GetKind() != "Canary" {
			continue
		}
		cd := &flaggerv1.Canary{}
		if err := fromUnstructured(o, cd); err != nil {
			return nil, err
		}
		if cd.Spec.Provider != flaggerv1.IstioProvider {
			continue
		}
		canaries++
		if _, err := flagger.FlaggerV1beta1().Canaries(cd.Namespace).Create(context.TODO(), cd, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		canaryFactory := canary.NewFactory(kube, flagger, nil, &canary.NopTracker{}, flaggerSelectorLabels,
			flaggerIncludeLabelPrefix, logger)
		routerFactory := router.NewFactory(nil, kube, flagger, nil, "", "", logger, flagger, true)

		ctrl := canaryFactory.Controller(cd.Spec.TargetRef)
		labelSelector, labelValue, ports, err := ctrl.GetMetadata(cd)
		if err != nil {
			return nil, fmt.Errorf("canary %s: %w", cd.Name, err)
		}
		kubeRouter := routerFactory.KubernetesRouter(cd.Spec.TargetRef.Kind, labelSelector, labelValue, ports)
		if err := kubeRouter.Initialize(cd); err != nil {
			return nil, fmt.Errorf("canary %s: %w", cd.Name, err)
		}
		cd.Status.Phase = flaggerv1.CanaryPhaseInitialized
		if _, err := ctrl.Initialize(cd); err != nil {
			return nil, fmt.Errorf("canary %s: %w", cd.Name, err)
		}
		if err := kubeRouter.Reconcile(cd); err != nil {
			return nil, fmt.Errorf("canary %s: %w", cd.Name, err)
		}
		meshRouter := routerFactory.MeshRouter(cd.Spec.Provider, labelSelector)
		if err := meshRouter.Reconcile(cd); err != nil {
			return nil, fmt.Errorf("canary %s: %w", cd.Name, err)
		}
		if w := state.CanaryWeight; w > 0 {
			if err := meshRouter.SetRoutes(cd, 100-w, w, false); err != nil {
				return nil, fmt.Errorf("canary %s: %w", cd.Name, err)
			}
		}
	}
	if canaries == 0 {
		return nil, nil
	}

	var out []runtime.Object
	ctx := context.TODO()
	svcs, err := kube.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range svcs.Items {
		svcs.Items[i].SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Service"))
		out = append(out, &svcs.Items[i])
	}
	deps, err := kube.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range deps.Items {
		if strings.HasSuffix(deps.Items[i].Name, "-primary") {
			deps.Items[i].SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("Deployment"))
			out = append(out, &deps.Items[i])
		}
	}
	drs, err := flagger.NetworkingV1beta1().DestinationRules("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range drs.Items {
		drs.Items[i].APIVersion, drs.Items[i].Kind = "networking.istio.io/v1beta1", "DestinationRule"
		out = append(out, &drs.Items[i])
	}
	vss, err := flagger.NetworkingV1beta1().VirtualServices("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range vss.Items {
		vss.Items[i].APIVersion, vss.Items[i].Kind = "networking.istio.io/v1beta1", "VirtualService"
		out = append(out, &vss.Items[i])
	}

	var res []*unstructured.Unstructured
	for _, o := range out {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			return nil, err
		}
		u := &unstructured.Unstructured{Object: m}
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		unstructured.RemoveNestedField(u.Object, "status")
		res = append(res, u)
	}
	sort.Slice(res, func(i, j int) bool { return id(res[i]) < id(res[j]) })
	return res, nil
}

func fromUnstructured(u *unstructured.Unstructured, into any) error {
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		return fmt.Errorf("%s: %w", id(u), err)
	}
	return nil
}

// id is "Kind namespace/name".
func id(u *unstructured.Unstructured) string {
	return u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
}
