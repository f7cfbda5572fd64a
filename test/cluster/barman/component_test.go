package barman

import (
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
)

// The plugin is built against the CloudNativePG this cluster runs: its go.mod requires cloudnative-pg and
// its api at the version cnpg pins.
func TestPluginBuiltAgainstCNPG130(t *testing.T) {
	cache, err := gobuild.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := gobuild.ModuleDir(context.Background(), cache, Component())
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", "mod", "edit", "-json", dir+"/go.mod").Output()
	if err != nil {
		t.Fatal(err)
	}
	var mod struct {
		Require []struct{ Path, Version string }
	}
	if err := json.Unmarshal(out, &mod); err != nil {
		t.Fatal(err)
	}
	req := map[string]string{}
	for _, r := range mod.Require {
		req[r.Path] = r.Version
	}
	for _, m := range []string{"github.com/cloudnative-pg/cloudnative-pg", "github.com/cloudnative-pg/api"} {
		if req[m] != CNPGVersion {
			t.Errorf("the plugin's go.mod requires %s %q, want %s", m, req[m], CNPGVersion)
		}
	}
}

// manager is the cached (or just built) plugin binary.
func manager(t *testing.T) string {
	t.Helper()
	cache, err := gobuild.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	bins, err := gobuild.Ensure(context.Background(), cache, Component(), io.Discard)
	if err != nil {
		t.Fatalf("build the Barman Cloud plugin: %v", err)
	}
	return bins["manager"]
}

// One binary is both the operator-side plugin and the instance sidecar: its subcommands, and the flags the
// Deployment passes to `operator`.
func TestManagerCommands(t *testing.T) {
	m := manager(t)
	help := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(m, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("manager %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	root := help("--help")
	for _, sub := range []string{"operator", "instance", "restore", "healthcheck"} {
		if !strings.Contains(root, "\n  "+sub+" ") {
			t.Errorf("manager --help lists no %s command:\n%s", sub, root)
		}
	}
	op := help("operator", "--help")
	for _, f := range []string{"--server-cert", "--server-key", "--client-cert", "--server-address", "--leader-elect"} {
		if !strings.Contains(op, f) {
			t.Errorf("manager operator --help has no %s:\n%s", f, op)
		}
	}
	if inst := help("instance", "--help"); !strings.Contains(inst, "Usage:") {
		t.Errorf("manager instance --help:\n%s", inst)
	}
	if out, err := exec.Command(m, "no-such-command").CombinedOutput(); err == nil {
		t.Errorf("manager accepted an unknown command:\n%s", out)
	}
}
