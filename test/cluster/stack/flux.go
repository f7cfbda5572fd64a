package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/txmesh/txmesh/test/cluster/build"
	"github.com/txmesh/txmesh/test/cluster/deploy"
	"github.com/txmesh/txmesh/test/cluster/gitserver"
)

// GitOps is the continuous-delivery side of the stack (issue 11): a Git server on the cluster's bridge holding
// a clone of the checkout, and Flux's controllers reconciling flux/clusters/e2e from it.
type GitOps struct {
	URL    string // what Flux clones and image automation pushes to
	Bare   string // the served bare repository
	Branch string
	done   chan error
}

// gitPort is the Git server's port on the host's bridge address.
const gitPort = 5001

// Flux GroupVersionResources the e2e reads.
var (
	FluxKustomizations = schema.GroupVersionResource{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Resource: "kustomizations"}
	FluxGitRepos       = schema.GroupVersionResource{Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "gitrepositories"}
	FluxImagePolicies  = schema.GroupVersionResource{Group: "image.toolkit.fluxcd.io", Version: "v1", Resource: "imagepolicies"}
	FluxAutomations    = schema.GroupVersionResource{Group: "image.toolkit.fluxcd.io", Version: "v1", Resource: "imageupdateautomations"}
)

// fluxControllers are the controllers flux/clusters/e2e needs (no helm-controller: no chart is reachable).
var fluxControllers = []string{"source-controller", "kustomize-controller", "image-reflector-controller",
	"image-automation-controller"}

// StartGit serves a clone of the checkout at http://<host>:5001/txmesh.git until ctx ends: its HEAD commit
// plus, as one more commit, the working tree's uncommitted changes to tracked files (so Flux applies what
// the run built), on branch main. The server runs inside the e2e process and its repository under the
// cluster's directory, so neither outlives a crash or `make cluster-down`.
func (s *Stack) StartGit(ctx context.Context) (*GitOps, error) {
	root := filepath.Join(s.Cluster.Layout().Dir, "git")
	bare, err := gitserver.InitFrom(ctx, root, "txmesh", s.Repo)
	if err != nil {
		return nil, err
	}
	// An identity of its own: the commit is made where none may be configured (a fresh runner).
	rev, err := git(ctx, s.Repo, "-c", "user.name=txmesh e2e", "-c", "user.email=e2e@txmesh.invalid",
		"stash", "create", "e2e: the working tree's changes")
	if err != nil {
		return nil, err
	}
	if rev == "" {
		if rev, err = git(ctx, s.Repo, "rev-parse", "HEAD"); err != nil {
			return nil, err
		}
	}
	if _, err := git(ctx, s.Repo, "push", "--quiet", "--force", bare, rev+":refs/heads/main"); err != nil {
		return nil, err
	}
	if _, err := git(ctx, bare, "symbolic-ref", "HEAD", "refs/heads/main"); err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(s.Cluster.Layout().HostIP(), fmt.Sprint(gitPort))
	g := &GitOps{URL: "http://" + addr + "/txmesh.git", Bare: bare, Branch: "main", done: make(chan error, 1)}
	go func() { g.done <- gitserver.Serve(ctx, addr, root) }()
	for start := time.Now(); ; {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			break
		}
		select {
		case err := <-g.done:
			if err == nil {
				err = errors.New("stopped before it listened")
			}
			return nil, fmt.Errorf("git server: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Since(start) > 10*time.Second {
			return nil, fmt.Errorf("git server not listening on %s", addr)
		}
	}
	s.logf("git server at %s: %s as main", g.URL, rev[:12])
	return g, nil
}

// Head is the commit of the served branch.
func (g *GitOps) Head(ctx context.Context) (string, error) {
	return git(ctx, g.Bare, "rev-parse", g.Branch)
}

// Log is the served branch's last n commits, one line each.
func (g *GitOps) Log(ctx context.Context, n int) (string, error) {
	return git(ctx, g.Bare, "log", "--format=%h %an: %s", fmt.Sprintf("-%d", n), g.Branch)
}

// Commit makes one commit on the served branch, as an engineer's push would: change edits a fresh clone
// (its directory), the commit is made with msg and pushed; it returns the new commit. A push that loses
// the race with image automation's is made again on the new head.
func (g *GitOps) Commit(ctx context.Context, msg string, change func(dir string) error) (string, error) {
	return g.push(ctx, func(dir string) error {
		if err := change(dir); err != nil {
			return err
		}
		_, err := git(ctx, dir, "-c", "user.name=txmesh e2e", "-c", "user.email=e2e@txmesh.invalid",
			"commit", "--quiet", "-a", "-m", msg)
		return err
	})
}

// Revert commits the revert of commit on the served branch and returns the new commit.
func (g *GitOps) Revert(ctx context.Context, commit string) (string, error) {
	return g.push(ctx, func(dir string) error {
		_, err := git(ctx, dir, "-c", "user.name=txmesh e2e", "-c", "user.email=e2e@txmesh.invalid",
			"revert", "--no-edit", commit)
		return err
	})
}

func (g *GitOps) push(ctx context.Context, commit func(dir string) error) (string, error) {
	var err error
	for range 3 {
		var dir string
		if dir, err = os.MkdirTemp("", "txmesh-git-*"); err != nil {
			return "", err
		}
		defer os.RemoveAll(dir)
		if _, err = git(ctx, dir, "clone", "--quiet", "--branch", g.Branch, g.Bare, "."); err != nil {
			return "", err
		}
		if err = commit(dir); err != nil {
			return "", err
		}
		if _, err = git(ctx, dir, "push", "--quiet", "origin", "HEAD:"+g.Branch); err == nil {
			return git(ctx, dir, "rev-parse", "HEAD")
		}
	}
	return "", err
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// InstallFlux builds (or finds cached) the Flux controllers, images them, pushes the images to the cluster's
// registry, deploys them from their modules' kustomize bases (deploy.Flux) and waits for them; then applies
// what `flux bootstrap` would: the flux-system GitRepository (g) and the flux-system Kustomization of
// flux/clusters/e2e. It does not wait for the reconciliation.
func (s *Stack) InstallFlux(ctx context.Context, g *GitOps) error {
	var ctrls []deploy.FluxController
	for _, name := range fluxControllers {
		img, dir, err := s.cdComponent(ctx, name)
		if err != nil {
			return err
		}
		ctrls = append(ctrls, deploy.FluxController{Name: name, ModuleDir: dir, Image: img})
	}
	objs, err := deploy.Flux(ctrls...)
	if err != nil {
		return err
	}
	if err := s.Apply.Apply(ctx, objs); err != nil {
		return err
	}
	for _, name := range fluxControllers {
		if err := s.Apply.Wait(ctx, deploy.Deployments, deploy.FluxNamespace, name, 3*time.Minute,
			deploy.DeploymentAvailable); err != nil {
			return err
		}
	}
	boot, err := deploy.Decode([]byte(fmt.Sprintf(`apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: flux-system
  namespace: flux-system
spec:
  interval: 15s
  url: %s
  ref:
    branch: %s
  # Only what the Kustomizations read: the manifests, not the sources.
  ignore: |
    /*
    !/flux/
    !/kustomize/
    !/mesh/
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: flux-system
  namespace: flux-system
spec:
  interval: 1m
  retryInterval: 30s
  timeout: 5m
  sourceRef:
    kind: GitRepository
    name: flux-system
  path: ./flux/clusters/e2e
  prune: true
  # As flux bootstrap's: no wait, so that an ImagePolicy without a matching tag yet (not Ready) does not hold
  # it; the Kustomizations of the tree wait for their own objects.
  wait: false
`, g.URL, g.Branch)))
	if err != nil {
		return err
	}
	if err := s.Apply.Apply(ctx, boot); err != nil {
		return err
	}
	s.logf("Flux %s, %s, %s, %s running; flux-system points at %s", build.SourceControllerVersion,
		build.KustomizeControllerVersion, build.ImageReflectorControllerVersion, build.ImageAutomationControllerVersion,
		g.URL)
	return nil
}

// cdComponent builds (or finds cached) a CD component's binaries and its image (the first build.CDImages has
// for it), pushes the image to the cluster's registry and returns its reference and the component's module
// directory (its kustomize bases).
func (s *Stack) cdComponent(ctx context.Context, name string) (string, string, error) {
	c := build.FindCD(name)
	bins, err := build.Ensure(ctx, s.cache, c, s.log)
	if err != nil {
		return "", "", err
	}
	var spec *build.CDImage
	for _, ci := range build.CDImages() {
		if ci.Component == name && spec == nil {
			spec = &ci
		}
	}
	if spec == nil {
		return "", "", fmt.Errorf("no image of %s in build.CDImages", name)
	}
	files := map[string]string{}
	for in, bin := range spec.Files {
		files[in] = bins[bin]
	}
	img, err := s.builder.Binary(ctx, spec.Ref, files, spec.Entrypoint, spec.User)
	if err != nil {
		return "", "", err
	}
	if err := s.push(ctx, img); err != nil {
		return "", "", err
	}
	dir, err := build.ModuleDir(ctx, s.cache, c)
	if err != nil {
		return "", "", err
	}
	return img.Ref, dir, nil
}

// InstallFlagger builds (or finds cached) Flagger, pushes its image, deploys it from its module
// (deploy.Flagger: the kubernetes provider, the cluster's Prometheus) and waits until it is available.
func (s *Stack) InstallFlagger(ctx context.Context) error {
	img, dir, err := s.cdComponent(ctx, "flagger")
	if err != nil {
		return err
	}
	objs, err := deploy.Flagger(dir, img)
	if err != nil {
		return err
	}
	if err := s.Apply.Apply(ctx, objs); err != nil {
		return err
	}
	if err := s.Apply.Wait(ctx, deploy.Deployments, deploy.FlaggerNamespace, "flagger", 3*time.Minute,
		deploy.DeploymentAvailable); err != nil {
		return err
	}
	s.logf("Flagger %s running (kubernetes provider, metrics from %s)", build.FlaggerVersion, deploy.PrometheusURL)
	return nil
}

// FluxReady: a Flux object's Ready condition is True for its current generation; the reason otherwise.
func FluxReady(o *unstructured.Unstructured) (bool, string) {
	conds, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
	obs, _, _ := unstructured.NestedInt64(o.Object, "status", "observedGeneration")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] != "Ready" {
			continue
		}
		msg := fmt.Sprintf("%v: %v", m["reason"], m["message"])
		return m["status"] == "True" && obs >= o.GetGeneration(), msg
	}
	return false, "no Ready condition yet"
}
