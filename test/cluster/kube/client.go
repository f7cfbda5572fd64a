package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// RESTConfig is the admin's client configuration.
func (c *Cluster) RESTConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.layout.Kubeconfig())
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}

// Client is an admin clientset.
func (c *Cluster) Client() (kubernetes.Interface, error) {
	cfg, err := c.RESTConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

func (c *Cluster) waitAPIServer(ctx context.Context, d time.Duration) error {
	cs, err := c.Client()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		cancel()
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			return nil
		}
		last = err
		if !c.procAlive("kube-apiserver") {
			return fmt.Errorf("kube-apiserver exited%s", c.tail("kube-apiserver")())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	return fmt.Errorf("kube-apiserver not ready after %s: %w%s", d, last, c.tail("kube-apiserver")())
}

func (c *Cluster) procAlive(name string) bool {
	p, ok := c.proc(name)
	return ok && p.Alive()
}

// waitNodesReady waits for every node to register and report Ready, recording its pod range on the Node
// object (the range is the node's by construction: the CNI configuration and the routes use it).
func (c *Cluster) waitNodesReady(ctx context.Context, d time.Duration) error {
	cs, err := c.Client()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(d)
	for {
		var notReady []string
		for _, n := range c.Nodes() {
			node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				notReady = append(notReady, n.Name+" (not registered)")
				continue
			}
			if node.Spec.PodCIDR == "" {
				patch, _ := json.Marshal(map[string]any{"spec": map[string]any{
					"podCIDR": n.PodNet.String(), "podCIDRs": []string{n.PodNet.String()}}})
				if _, err := cs.CoreV1().Nodes().Patch(ctx, n.Name, types.StrategicMergePatchType, patch,
					metav1.PatchOptions{}); err != nil {
					return fmt.Errorf("record pod range of %s: %w", n.Name, err)
				}
			}
			if !nodeReady(node) {
				notReady = append(notReady, n.Name+" ("+readyMessage(node)+")")
			}
		}
		if len(notReady) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			sort.Strings(notReady)
			return fmt.Errorf("nodes not ready after %s: %s%s", d, strings.Join(notReady, ", "),
				c.tail("kubelet/"+c.Nodes()[0].Name)())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

func readyMessage(n *corev1.Node) string {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Message
		}
	}
	return "no Ready condition yet"
}

// WaitNodeReady waits until the named node reports Ready (or, with ready false, NotReady/Unknown).
func (c *Cluster) WaitNodeReady(ctx context.Context, name string, ready bool, d time.Duration) error {
	cs, err := c.Client()
	if err != nil {
		return err
	}
	return WaitNodeReady(ctx, cs, name, ready, d)
}

// WaitNodeReady waits until the named node of any cluster reports Ready (or, with ready false, NotReady/Unknown).
func WaitNodeReady(ctx context.Context, cs kubernetes.Interface, name string, ready bool, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		node, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err == nil && nodeReady(node) == ready {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s Ready=%v not reached after %s", name, ready, d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
