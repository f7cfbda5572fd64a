package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// shippedImage is the operand image every overlay inherits from the base's Cluster manifests.
const shippedImage = "kustomize/base/database/bank-db.yaml"

var (
	imageNameLine = regexp.MustCompile(`(?m)^\s*imageName:\s*(\S+)`)
	majorOfTag    = regexp.MustCompile(`:(\d+)[.\-]`)
	majorOfServer = regexp.MustCompile(`^(\d+)`)
)

// shippedMajor is the PostgreSQL major version the manifests ship: the tag of the base's imageName
// (ghcr.io/cloudnative-pg/postgresql:18.4-system-trixie → 18), read from the checkout.
func shippedMajor(repo string) (string, error) {
	raw, err := os.ReadFile(filepath.Join(repo, shippedImage))
	if err != nil {
		return "", err
	}
	m := imageNameLine.FindSubmatch(raw)
	if m == nil {
		return "", fmt.Errorf("%s: no imageName", shippedImage)
	}
	t := majorOfTag.FindSubmatch(m[1])
	if t == nil {
		return "", fmt.Errorf("%s: imageName %s has no major version in its tag", shippedImage, m[1])
	}
	return string(t[1]), nil
}

// checkMajor refuses a server whose major version is not the one the manifests ship: an e2e run on another
// major would prove nothing about what is deployed.
func checkMajor(server, shipped string) error {
	m := majorOfServer.FindStringSubmatch(server)
	if m == nil {
		return fmt.Errorf("server_version %q has no major version", server)
	}
	if m[1] != shipped {
		return fmt.Errorf("the cluster runs PostgreSQL %s, the manifests ship %s (%s): the e2e must run the "+
			"major version it ships", server, shipped, shippedImage)
	}
	return nil
}

// postgresVersion reads SHOW server_version on both databases' primaries, and returns it (both must agree)
// after checking its major against the manifests'.
func (e *env) postgresVersion(ctx context.Context) (string, error) {
	shipped, err := shippedMajor(e.opts.Repo)
	if err != nil {
		return "", err
	}
	var version string
	for _, db := range []string{"bank-db", "store-db"} {
		p, err := e.primary(ctx, db)
		if err != nil {
			return "", err
		}
		out, err := e.kubectl(ctx, "kubectl", "exec", "-n", namespace, p.Pod, "-c", "postgres", "--",
			"psql", "-tAc", "show server_version")
		if err != nil {
			return "", fmt.Errorf("%s: server_version: %w", p.Pod, err)
		}
		v := strings.TrimSpace(out)
		if err := checkMajor(v, shipped); err != nil {
			return "", fmt.Errorf("%s: %w", db, err)
		}
		if version != "" && v != version {
			return "", fmt.Errorf("bank-db runs PostgreSQL %s, store-db %s", version, v)
		}
		version = v
	}
	return version, nil
}
