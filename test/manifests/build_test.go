package manifests

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// stampFlag is the linker flag that sets a version variable: -X <package>.<var>=<value>.
var stampFlag = regexp.MustCompile(`-X ([A-Za-z0-9_./-]+)=(\S+?)['"]?(\s|$)`)

// TestBuildsStampTheImagesVersion: `make build` and `make run`'s build stamp the variable the Dockerfile stamps
// (-X main.version, which --version prints: src/cmd/*/version_test.go), with VERSION when given and the
// checkout's `git describe` otherwise, into every command the image ships.
func TestBuildsStampTheImagesVersion(t *testing.T) {
	docker, err := readRepoFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var target string
	for _, line := range strings.Split(docker, "\n") {
		if m := stampFlag.FindStringSubmatch(line); m != nil && strings.Contains(line, "go build") {
			target = m[1]
			if m[2] != "${VERSION}" {
				t.Errorf("Dockerfile stamps %s=%s, want the build argument ${VERSION}", m[1], m[2])
			}
		}
	}
	if target == "" {
		t.Fatal("the Dockerfile's go build stamps no version (-X …=${VERSION})")
	}
	described, err := exec.Command("git", "-C", RepoRoot(), "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		t.Fatalf("git describe: %v", err)
	}
	for _, c := range []struct{ target, version string }{
		{"build", "9.8.7-make"}, {"run", "9.8.7-make"}, {"build", ""}, {"run", ""},
	} {
		want := c.version
		args := []string{"-n", "-C", RepoRoot(), c.target}
		if want != "" {
			args = append(args, "VERSION="+want)
		} else {
			want = strings.TrimSpace(string(described))
		}
		out, err := exec.Command("make", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		built := false
		for _, line := range strings.Split(string(out), "\n") {
			if !strings.Contains(line, " build ") {
				continue
			}
			built = true
			m := stampFlag.FindStringSubmatch(line)
			if m == nil || m[1] != target || m[2] != want {
				t.Errorf("make %s builds without -X %s=%s:\n%s", strings.Join(args[3:], " "), target, want, line)
			}
			for _, cmd := range []string{"bank", "store", "txaudit"} {
				if !strings.Contains(line, "./src/cmd/"+cmd) {
					t.Errorf("make %s does not build %s:\n%s", strings.Join(args[3:], " "), cmd, line)
				}
			}
		}
		if !built {
			t.Errorf("make %s runs no go build:\n%s", strings.Join(args[3:], " "), out)
		}
	}
}
