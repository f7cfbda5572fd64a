package build

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Each wrapper repeats its module's go line and whole `replace` block, read from the module's own go.mod (a
// directory replace, ./api, becomes that module at the component's version), and nothing else but the
// substitutes for versions the module proxy refuses.
func TestCDComponentsRepeatUpstreamGoMod(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	cache, err := CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range CDComponents() {
		dir, err := ModuleDir(context.Background(), cache, c)
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("go", "mod", "edit", "-json", filepath.Join(dir, "go.mod")).Output()
		if err != nil {
			t.Fatalf("%s: go mod edit -json: %v", c.Name, err)
		}
		var mod struct {
			Go      string
			Replace []struct {
				Old, New struct{ Path, Version string }
			}
		}
		if err := json.Unmarshal(out, &mod); err != nil {
			t.Fatal(err)
		}
		if c.GoLine != mod.Go {
			t.Errorf("%s: wrapper go line %q, upstream %q", c.Name, c.GoLine, mod.Go)
		}
		want := map[string]string{}
		for _, r := range mod.Replace {
			if r.New.Version == "" { // a directory of the module: the published module of that path
				want[r.Old.Path] = r.Old.Path + " " + c.Version
			} else {
				want[r.Old.Path] = r.New.Path + " " + r.New.Version
			}
		}
		maps.Copy(want, proxySubstitutes[c.Name])
		if !maps.Equal(want, c.Replace) {
			t.Errorf("%s %s: replaces\n%v\nupstream's go.mod needs\n%v", c.Name, c.Version, c.Replace, want)
		}
	}
	for _, img := range CDImages() {
		c := FindCD(img.Component)
		for _, bin := range img.Files {
			found := false
			for _, p := range c.Packages {
				found = found || filepath.Base(p) == bin
			}
			if !found {
				t.Errorf("image %s: %s is not a binary of %s", img.Ref, bin, c.Name)
			}
		}
	}
}

// TXMESH_BUILD_CD=1 builds every CD component into the cache (minutes each, cold; take the machine's heavy
// lock around it: flock /tmp/txmesh-heavy.lock nice -n 19 go test -run TestBuildCD -timeout 3h ./build).
// One component: -run 'TestBuildCD/^flagger$'.
func TestBuildCD(t *testing.T) {
	if os.Getenv("TXMESH_BUILD_CD") == "" {
		t.Skip("set TXMESH_BUILD_CD=1 to build the CD components (minutes each)")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	cache, err := CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range CDComponents() {
		t.Run(c.Name, func(t *testing.T) {
			start := time.Now()
			bins, err := Ensure(context.Background(), cache, c, testLog{t})
			if err != nil {
				t.Fatal(err)
			}
			for name, path := range bins {
				st, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s %s: %s %.1f MiB", c.Name, c.Version, name, float64(st.Size())/(1<<20))
			}
			t.Logf("%s %s: ready in %s", c.Name, c.Version, time.Since(start).Round(time.Second))
		})
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
