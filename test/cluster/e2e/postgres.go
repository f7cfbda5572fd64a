package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/txmesh/txmesh/test/cluster/cnpg"
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
// after checking its major against the manifests'. With upgradePending (the run's major-upgrade row is still
// to come), bank-db must run cnpg.UpgradeFrom's major instead, and the version returned is store-db's.
func (e *env) postgresVersion(ctx context.Context, upgradePending bool) (string, error) {
	shipped, err := shippedMajor(e.opts.Repo)
	if err != nil {
		return "", err
	}
	var version string
	for _, db := range []string{"store-db", "bank-db"} {
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
		if db == "bank-db" && upgradePending {
			if err := checkMajor(v, cnpg.UpgradeFrom.Major); err != nil {
				return "", fmt.Errorf("bank-db, before the major-upgrade row: %w", err)
			}
			continue
		}
		if err := checkMajor(v, shipped); err != nil {
			return "", fmt.Errorf("%s: %w", db, err)
		}
		if version != "" && v != version {
			return "", fmt.Errorf("store-db runs PostgreSQL %s, bank-db %s", version, v)
		}
		version = v
	}
	return version, nil
}
