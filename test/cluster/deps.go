package cluster

import (
	_ "github.com/google/go-containerregistry/pkg/v1/tarball"
	_ "k8s.io/client-go/kubernetes"
	_ "sigs.k8s.io/kustomize/api/krusty"
)
