package docs

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// TestRepositoryMarkdown: every Markdown file of the checkout has lines of at most MaxLine characters and
// relative links that resolve, anchors included.
func TestRepositoryMarkdown(t *testing.T) {
	root := repoRoot()
	files, err := Files(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"README.md", "docs/api.md", "docs/operations.md", "docs/testing.md"} {
		found := false
		for _, f := range files {
			found = found || f == want
		}
		if !found {
			t.Errorf("%s is not among the checked files %v", want, files)
		}
	}
	problems, err := Check(root, files)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("%d Markdown files checked", len(files))
}

// TestREADMEIsShort: the README is the five-minute front door (issue 23); the rest lives in docs/.
func TestREADMEIsShort(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n > 200 {
		t.Errorf("README.md has %d lines, more than 200: move the details to a page of docs/ and link it", n)
	}
}

// write lays out files (path → content) under a temporary root.
func write(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestCheck(t *testing.T) {
	good := strings.Repeat("é", MaxLine) // characters, not bytes: 800 bytes
	cases := []struct {
		name  string
		files map[string]string
		want  []string // substrings of the problems, in order; none: clean
	}{
		{"a line of MaxLine characters", map[string]string{"a.md": good + "\n"}, nil},
		{"a line one character longer", map[string]string{"a.md": "ok\n" + good + "x\n"},
			[]string{"a.md:2: line of 401 characters"}},
		{"a long line inside a code block counts too", map[string]string{"a.md": "```\n" + good + "x\n```\n"},
			[]string{"a.md:2: line of 401"}},
		{"links that resolve", map[string]string{
			"README.md":   "# Top\n[api](docs/api.md) [ops](docs/api.md#failure-policy) [dir](docs) [self](#top) [web](https://example.org/x)\n",
			"docs/api.md": "# API\n## Failure policy\n[back](../README.md#top) [root](/README.md) [same](#api)\n",
		}, nil},
		{"a missing file", map[string]string{"README.md": "see [api](docs/ap.md)\n"},
			[]string{"README.md:1: link docs/ap.md: docs/ap.md does not exist"}},
		{"a missing anchor", map[string]string{
			"README.md":   "see [api](docs/api.md#failure)\n",
			"docs/api.md": "# API\n## Failure policy\n",
		}, []string{"README.md:1: link docs/api.md#failure: docs/api.md has no heading or anchor #failure"}},
		{"a missing anchor in the same file", map[string]string{"a.md": "# One\n[two](#two)\n"},
			[]string{"a.md:2: link #two: a.md has no heading or anchor #two"}},
		{"a link out of the repository", map[string]string{"a.md": "[x](../outside.md)\n"},
			[]string{"link ../outside.md leaves the repository"}},
		{"a reference definition", map[string]string{"a.md": "[x][1]\n\n[1]: nowhere.md\n"},
			[]string{"a.md:3: link nowhere.md: nowhere.md does not exist"}},
		{"links in code are text", map[string]string{"a.md": "`[x](nowhere.md)`\n```\n[y](nowhere.md)\n```\n"}, nil},
		{"repeated headings and HTML anchors", map[string]string{
			"a.md": "# Runbook\n## Runbook\n<a id=\"store-outbox-stuck\"></a>\n[1](#runbook-1) [2](#store-outbox-stuck)\n",
		}, nil},
		{"flux bootstrap github without a read-write key", map[string]string{
			"a.md": "```sh\nflux bootstrap github --owner=me \\\n  --path=flux/clusters/minikube\n```\n"},
			[]string{"a.md:2: flux bootstrap github without --read-write-key"}},
		{"flux bootstrap github with it on a continuation line; in prose it is text", map[string]string{
			"a.md": "`flux bootstrap github` in prose\n```sh\nflux bootstrap github --owner=me \\\n  --read-write-key --path=x\n```\n"},
			nil},
		{"headings with code and punctuation", map[string]string{
			"a.md": "## Kubernetes on this machine (`make cluster-up`, `make e2e`)\n[k](#kubernetes-on-this-machine-make-cluster-up-make-e2e)\n",
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := write(t, c.files)
			var files []string
			for f := range c.files {
				files = append(files, f)
			}
			problems, err := Check(root, files)
			if err != nil {
				t.Fatal(err)
			}
			if len(problems) != len(c.want) {
				t.Fatalf("got %d problems %v, want %d %q", len(problems), problems, len(c.want), c.want)
			}
			for i, w := range c.want {
				if !strings.Contains(problems[i].String(), w) {
					t.Errorf("problem %d is %q, want it to contain %q", i, problems[i], w)
				}
			}
		})
	}
}
