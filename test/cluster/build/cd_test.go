package build

import (
	"context"
	"encoding/json"
	"maps"
	"os/exec"
	"path/filepath"
	"testing"
)

// Each wrapper repeats its module's go line and whole `replace` block, read from the module's own go.mod (a
// directory replace, ./api, becomes that module at the component's version), and nothing else but the
// substitutes for versions the module proxy refuses.
func TestCDComponentsRepeatUpstreamGoMod(t *testing.T) {
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
