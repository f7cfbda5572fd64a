package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// terraform: OpenTofu (built by terraform/build/check.sh) applies terraform/kubernetes to the cluster with a
// local backend. Checks: the StorageClass is what the module says, a plan right after is empty, destroy
// removes it.
var terraform = scenario{
	name:  "terraform",
	fault: "OpenTofu applies terraform/kubernetes (the production StorageClass, kubectl provider) to the cluster, plans no change, destroys",
	run:   terraformApply,
}

// tfStorageClass is the StorageClass terraform/kubernetes creates, with this cluster's provisioner.
const tfStorageClass = "ssd"

// terraformApply applies terraform/kubernetes — the cluster-level objects a platform team applies after
// terraform/azure, through the kubectl provider built from the module proxy — to this cluster with OpenTofu:
// the StorageClass must be what the module says, a plan right after must show no change, and destroy must
// remove it. Only the backend differs from production (local state in a scratch directory, not azurerm).
func terraformApply(ctx context.Context, e *env, r *Row) error {
	t := time.Now()
	tofu, mirror, err := tofuPaths(ctx, e.opts.Repo)
	if err != nil {
		return err
	}
	r.Times["build_or_find"] = time.Since(t).Seconds()
	work, err := os.MkdirTemp("", "txmesh-tofu-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	mod := filepath.Join(work, "kubernetes")
	if err := os.CopyFS(mod, os.DirFS(filepath.Join(e.opts.Repo, "terraform", "kubernetes"))); err != nil {
		return err
	}
	// An override file is how Terraform replaces a root module's backend without editing it.
	override := fmt.Sprintf("terraform {\n  backend \"local\" {\n    path = %q\n  }\n}\n", filepath.Join(work, "state"))
	if err := os.WriteFile(filepath.Join(mod, "backend_override.tf"), []byte(override), 0o600); err != nil {
		return err
	}
	rc := fmt.Sprintf("provider_installation {\n  filesystem_mirror {\n    path    = %q\n    include = [\"*/*/*\"]\n  }\n}\n", mirror)
	if err := os.WriteFile(filepath.Join(work, "tofurc"), []byte(rc), 0o600); err != nil {
		return err
	}
	vars := []string{"-var", "kubeconfig=" + e.c.Kubeconfig(),
		"-var", `storage_class={name="` + tfStorageClass + `",provisioner="rancher.io/local-path",parameters={}}`}
	run := func(args ...string) (string, error) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(cctx, tofu, args...)
		cmd.Dir = mod
		cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+filepath.Join(work, "tofurc"), "TF_IN_AUTOMATION=1",
			"TF_INPUT=0", "TF_PLUGIN_CACHE_DIR=")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	step := func(name string, args ...string) (string, error) {
		s := time.Now()
		out, err := run(args...)
		r.Times[name] = time.Since(s).Seconds()
		if err != nil {
			return out, fmt.Errorf("tofu %s: %w\n%s", strings.Join(args[:1], " "), err, tail(out, 20))
		}
		return out, nil
	}
	if _, err := step("init", "init", "-lockfile=readonly", "-no-color"); err != nil {
		return err
	}
	if _, err := step("apply", append([]string{"apply", "-auto-approve", "-no-color"}, vars...)...); err != nil {
		return err
	}
	sc, err := e.cs.StorageV1().StorageClasses().Get(ctx, tfStorageClass, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("after tofu apply: %w", err)
	}
	switch {
	case sc.Provisioner != "rancher.io/local-path":
		return fmt.Errorf("StorageClass %s: provisioner %q", sc.Name, sc.Provisioner)
	case sc.ReclaimPolicy == nil || *sc.ReclaimPolicy != "Retain":
		return fmt.Errorf("StorageClass %s: reclaimPolicy %v, want Retain", sc.Name, sc.ReclaimPolicy)
	case sc.VolumeBindingMode == nil || *sc.VolumeBindingMode != "WaitForFirstConsumer":
		return fmt.Errorf("StorageClass %s: volumeBindingMode %v, want WaitForFirstConsumer", sc.Name, sc.VolumeBindingMode)
	case sc.Labels["app.kubernetes.io/managed-by"] != "opentofu":
		return fmt.Errorf("StorageClass %s: labels %v", sc.Name, sc.Labels)
	}
	// -detailed-exitcode: 0 no change, 2 changes pending — what applied must read back as applied.
	if _, err := step("plan", append([]string{"plan", "-detailed-exitcode", "-no-color"}, vars...)...); err != nil {
		return fmt.Errorf("a plan after the apply is not empty: %w", err)
	}
	if _, err := step("destroy", append([]string{"destroy", "-auto-approve", "-no-color"}, vars...)...); err != nil {
		return err
	}
	_, err = e.cs.StorageV1().StorageClasses().Get(ctx, tfStorageClass, metav1.GetOptions{})
	switch {
	case err == nil:
		return fmt.Errorf("StorageClass %s is still there after tofu destroy", tfStorageClass)
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("StorageClass %s after tofu destroy: %w", tfStorageClass, err)
	}
	r.Checks = append(r.Checks, fmt.Sprintf("tofu apply of terraform/kubernetes created StorageClass %s (Retain, "+
		"WaitForFirstConsumer, managed-by opentofu) in %.1f s; the plan after it was empty; destroy removed it",
		tfStorageClass, r.Times["apply"]))
	return nil
}

// tofuPaths builds OpenTofu and terraform/kubernetes' providers if they are not cached (terraform/build/check.sh)
// and returns where they are, never waiting for the others' builds (.ci/run builds azurerm beside the e2e).
func tofuPaths(ctx context.Context, repo string) (tofu, mirror string, err error) {
	cmd := exec.CommandContext(ctx, filepath.Join(repo, "terraform", "build", "check.sh"), "paths", "kubernetes")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("terraform/build/check.sh paths kubernetes: %w\n%s", err, tail(out.String(), 20))
	}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "tofu="); ok {
			tofu = v
		}
		if v, ok := strings.CutPrefix(sc.Text(), "mirror="); ok {
			mirror = v
		}
	}
	if tofu == "" || mirror == "" {
		return "", "", errors.New("terraform/build/check.sh paths printed no tofu= and mirror= lines")
	}
	return tofu, mirror, nil
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
