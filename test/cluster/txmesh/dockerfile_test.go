package txmesh

import (
	"context"
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/txmesh/txmesh/test/cluster/images"
	"github.com/txmesh/txmesh/test/cluster/oci"
)

// TestDockerfileAgrees keeps imageSpec and buildArgs equal to the Dockerfile: whoever edits one
// and not the other gets a failure here.
func TestDockerfileAgrees(t *testing.T) {
	stages := parseDockerfile(t, filepath.Join(repoRoot(t), "Dockerfile"))
	final := stages[len(stages)-1]
	bins := map[string]string{}
	for _, c := range commands {
		bins[c] = "/bin/" + c
	}
	spec := imageSpec("txmesh.local/txmesh:test", bins)

	// The base: imageSpec's first layer and environment stand for distroless static nonroot.
	if !regexp.MustCompile(`^gcr\.io/distroless/static(-debian\d+)?:nonroot$`).MatchString(final.from) {
		t.Errorf("final stage FROM %s: images.StaticBase and images.StaticEnv mirror distroless static nonroot", final.from)
	}
	var user, workdir string
	var cmd, entrypoint, ports, copied, sources, env []string
	for _, in := range final.instructions {
		switch in.keyword {
		case "USER":
			user = in.args
		case "CMD":
			cmd = jsonArgs(t, in)
		case "ENTRYPOINT":
			entrypoint = jsonArgs(t, in)
		case "EXPOSE":
			for _, p := range strings.Fields(in.args) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				ports = append(ports, p)
			}
		case "COPY":
			words := strings.Fields(in.args)
			var srcs []string
			for _, w := range words[:len(words)-1] {
				if !strings.HasPrefix(w, "--") {
					srcs = append(srcs, w)
				}
			}
			dest := words[len(words)-1]
			if !strings.HasSuffix(dest, "/") {
				t.Fatalf("COPY %s: the test expects a directory destination", in.args)
			}
			for _, s := range srcs {
				copied = append(copied, path.Join(dest, path.Base(s)))
			}
			sources = append(sources, srcs...)
		case "WORKDIR":
			workdir = in.args
		case "ENV":
			env = append(env, strings.Fields(in.args)...)
		default:
			t.Errorf("final stage: %s %s is not mirrored by imageSpec: teach imageSpec and this test", in.keyword, in.args)
		}
	}
	if spec.User != user {
		t.Errorf("USER %q, imageSpec %q", user, spec.User)
	}
	if !reflect.DeepEqual(spec.Cmd, cmd) {
		t.Errorf("CMD %q, imageSpec %q", cmd, spec.Cmd)
	}
	if !reflect.DeepEqual(spec.Entrypoint, entrypoint) {
		t.Errorf("ENTRYPOINT %q, imageSpec %q", entrypoint, spec.Entrypoint)
	}
	if sort.Strings(ports); !reflect.DeepEqual(sorted(spec.Ports), ports) {
		t.Errorf("EXPOSE %q, imageSpec %q", ports, spec.Ports)
	}
	if workdir == "" {
		workdir = "/home/nonroot" // distroless nonroot's
	}
	if spec.WorkingDir != workdir {
		t.Errorf("WORKDIR %q, imageSpec %q", workdir, spec.WorkingDir)
	}
	for _, e := range append(slices.Clone(images.StaticEnv), env...) {
		if !slices.Contains(spec.Env, e) {
			t.Errorf("environment %s missing from imageSpec", e)
		}
	}
	var app []string
	for _, f := range spec.Layers[1].(oci.Files) {
		app = append(app, f.Path)
		if f.Mode != 0o755 || f.Source == "" || f.UID != 0 {
			t.Errorf("%s: %+v, want a root-owned 0755 copy of the built binary", f.Path, f)
		}
	}
	if sort.Strings(copied); !reflect.DeepEqual(sorted(app), copied) {
		t.Errorf("COPY puts %q, imageSpec %q", copied, app)
	}

	// The build: the same environment, flags and packages, and what is copied is what is built.
	var build []string
	for _, s := range stages[:len(stages)-1] {
		for _, in := range s.instructions {
			if in.keyword == "RUN" && strings.Contains(in.args, "go build") {
				build = shellWords(in.args)
			}
		}
	}
	i := slices.Index(build, "go")
	if i < 0 {
		t.Fatal("no go build in the Dockerfile's build stage")
	}
	if env := build[:i]; !reflect.DeepEqual(sorted(env), []string{"CGO_ENABLED=0", "GOOS=linux"}) {
		t.Errorf("go build environment %q; Txmesh sets CGO_ENABLED=0 GOOS=linux", env)
	}
	out := build[slices.Index(build, "-o")+1]
	if want := buildArgs(out, "${VERSION}"); !reflect.DeepEqual(build[i+1:], want) {
		t.Errorf("Dockerfile runs\n  go %q\nbuildArgs\n  go %q", build[i+1:], want)
	}
	var built []string
	for _, c := range commands {
		built = append(built, path.Join(out, c))
	}
	if !reflect.DeepEqual(sorted(sources), sorted(built)) {
		t.Errorf("the final stage copies %q, the build makes %q", sources, built)
	}
}

type instruction struct{ keyword, args string }

type stage struct {
	from         string
	instructions []instruction
}

// parseDockerfile splits a Dockerfile into stages of instructions, joining continuation lines.
func parseDockerfile(t *testing.T, file string) []stage {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var stages []stage
	var line string
	for _, l := range strings.Split(string(raw), "\n") {
		if trimmed := strings.TrimSpace(l); line == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			line += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		line += l
		keyword, args, _ := strings.Cut(strings.TrimSpace(line), " ")
		keyword, args, line = strings.ToUpper(keyword), strings.TrimSpace(args), ""
		if keyword == "FROM" {
			stages = append(stages, stage{from: strings.Fields(args)[0]})
			continue
		}
		if len(stages) == 0 {
			if keyword != "ARG" {
				t.Fatalf("%s before FROM", keyword)
			}
			continue
		}
		s := &stages[len(stages)-1]
		s.instructions = append(s.instructions, instruction{keyword, args})
	}
	if len(stages) < 2 {
		t.Fatalf("%s: expected a build stage and a final stage", file)
	}
	return stages
}

func jsonArgs(t *testing.T, in instruction) []string {
	t.Helper()
	var args []string
	if err := json.Unmarshal([]byte(in.args), &args); err != nil {
		t.Fatalf("%s %s: the test expects the JSON form: %v", in.keyword, in.args, err)
	}
	return args
}

// shellWords splits a command line on blanks outside double quotes and drops the quotes.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	quoted, inWord := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case (r == ' ' || r == '\t') && !quoted:
			if inWord {
				words, inWord = append(words, cur.String()), false
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// repoRoot is the txmesh checkout this module lives in.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for ; dir != "/"; dir = filepath.Dir(dir) {
		if mod, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(mod), "module github.com/txmesh/txmesh\n") {
			return dir
		}
	}
	t.Fatal("not inside the txmesh checkout")
	return ""
}

// Without the go command the image names what to install.
func TestImageNamesMissingGo(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Image(context.Background(), &images.Builder{Dir: t.TempDir()}, ".", "x")
	if err == nil || !strings.Contains(err.Error(), "go not found: apt-get install golang") {
		t.Fatalf("error %v, want go and its package named", err)
	}
}
