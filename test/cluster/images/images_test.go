package images_test

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/txmesh/txmesh/test/cluster/busybox"
	"github.com/txmesh/txmesh/test/cluster/cnpg"
	"github.com/txmesh/txmesh/test/cluster/images"
	"github.com/txmesh/txmesh/test/cluster/kube"
	"github.com/txmesh/txmesh/test/cluster/txmesh"
)

// TestImagesRunInContainerd builds every kind of image (into the real cache: the Postgres build is
// reused), imports each into a real containerd and runs it, proving platform, entrypoint, command, user
// and layout. The recipes are their components' (kube's pause, busybox, cnpg's PostgreSQL operand,
// txmesh); the machinery they share is this package's.
func TestImagesRunInContainerd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	b := &images.Builder{Log: testLog{t}}
	cd := startContainerd(t)

	imported := func(t *testing.T, img images.Image) {
		t.Helper()
		if out := cd.ctr(t, "images", "import", img.Path); !strings.Contains(out, img.Ref) {
			t.Fatalf("import %s: %s", img.Path, out)
		}
		out := cd.ctr(t, "images", "ls", "name=="+img.Ref)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[1], img.Ref+" ") {
			t.Fatalf("ctr images ls: %s", out)
		}
		if platform := "linux/" + runtime.GOARCH; !strings.Contains(lines[1], " "+platform+" ") {
			t.Errorf("ctr images ls: %s, want platform %s", lines[1], platform)
		}
	}

	t.Run("txmesh", func(t *testing.T) {
		const tag = "imagetest"
		img, err := txmesh.Image(ctx, b, repoRoot(t), tag)
		if err != nil {
			t.Fatal(err)
		}
		files := extract(t, img)
		for _, p := range []string{"bank", "store", "txaudit"} {
			expect(t, files, p, tar.TypeReg, 0o755, 0, 0)
		}
		expect(t, files, "tmp", tar.TypeDir, 0o1777, 0, 0)
		expect(t, files, "home/nonroot", tar.TypeDir, 0o700, 65532, 65532)
		expect(t, files, "etc/ssl/certs/ca-certificates.crt", tar.TypeReg, 0o644, 0, 0)
		if !strings.Contains(files["etc/passwd"].data, "nonroot:x:65532:65532:") {
			t.Errorf("/etc/passwd: %q", files["etc/passwd"].data)
		}
		imported(t, img)

		out, err := cd.run(img.Ref, "txaudit-help", nil, "/txaudit", "-h")
		if err != nil || !strings.Contains(out, "-store-dsn") {
			t.Errorf("/txaudit -h: %v\n%s", err, out)
		}
		// No arguments: the image's CMD /bank serve, which logs its version and then waits for its
		// database (a socket that does not exist) until SIGTERM. Plain HTTP: its only caller is "anonymous".
		pid, logPath := cd.start(t, img.Ref, "bank-serve", []string{"--env", "DATABASE_URL=postgres://bank@/bank?host=/nonexistent",
			"--env", "ALLOWED_CALLERS=anonymous"})
		waitFor(t, logPath, `"version":"`+tag+`"`)
		uid, gid, args := procIDs(t, pid)
		if uid != "65532" || gid != "65532" || strings.Join(args, " ") != "/bank serve" {
			t.Errorf("bank runs as %s:%s: %q", uid, gid, args)
		}
		cd.stopTask(t, "bank-serve")
	})

	t.Run("busybox", func(t *testing.T) {
		img, err := busybox.Image(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`^txmesh\.local/busybox:[0-9]+_[0-9.]+-[0-9A-Za-z_.-]+$`).MatchString(img.Ref) || img.Version == "" {
			t.Errorf("ref %s, version %q", img.Ref, img.Version)
		}
		imported(t, img)
		// What local-path-provisioner's helper pods do, as root.
		script := `echo ok; id -u; mkdir -m 0777 -p /tmp/pv/a && chmod 700 /tmp/pv && ls /tmp/pv && rm -rf /tmp/pv && sleep 0.1 && cat /etc/passwd | head -1`
		out, err := cd.run(img.Ref, "busybox-sh", nil, "sh", "-c", script)
		if want := "ok\n0\na\nroot:x:0:0:root:/root:/bin/sh\n"; err != nil || out != want {
			t.Errorf("sh -c: %v\n%q, want %q", err, out, want)
		}
		// CMD sh, reading an empty stdin (ctr keeps a container's stdin open: /dev/null it is).
		if out, err := cd.run(img.Ref, "busybox-cmd", []string{"--null-io"}); err != nil {
			t.Errorf("CMD: %v\n%s", err, out)
		}
	})

	t.Run("pause", func(t *testing.T) {
		img, err := kube.Pause(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		imported(t, img)
		out, err := cd.run(img.Ref, "pause-version", nil, "/pause", "-v")
		if err != nil || strings.TrimSpace(out) != "pause.c v3.10-v1.32.13" {
			t.Errorf("/pause -v: %v\n%s", err, out)
		}
		pid, _ := cd.start(t, img.Ref, "pause", nil)
		uid, gid, args := procIDs(t, pid)
		if uid != "65535" || gid != "65535" || strings.Join(args, " ") != "/pause" {
			t.Errorf("pause runs as %s:%s: %q", uid, gid, args)
		}
		cd.stopTask(t, "pause")
	})

	t.Run("binary", func(t *testing.T) {
		// Any static binary will do: busybox's id shows the user and the base's passwd entry.
		files := map[string]string{"/usr/local/bin/busybox": "/bin/busybox"}
		entrypoint := []string{"/usr/local/bin/busybox", "id"}
		img, err := b.Binary(ctx, "txmesh.local/binarytest:1", files, entrypoint, "65532:65532")
		if err != nil {
			t.Fatal(err)
		}
		again, err := b.Binary(ctx, "txmesh.local/binarytest:1", files, entrypoint, "65532:65532")
		if err != nil || again != img {
			t.Errorf("second call: %+v %v, want the cached %+v", again, err, img)
		}
		imported(t, img)
		out, err := cd.run(img.Ref, "binary-entrypoint", nil)
		if want := "uid=65532(nonroot) gid=65532(nonroot) groups=65532(nonroot)"; err != nil || strings.TrimSpace(out) != want {
			t.Errorf("entrypoint: %v\n%q, want %q", err, out, want)
		}
	})

	t.Run("postgres", func(t *testing.T) {
		img, err := cnpg.Postgres(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		if img.Ref != "txmesh.local/postgresql:18-forky" || !regexp.MustCompile(`^18\.\d+-`).MatchString(img.Version) {
			t.Errorf("ref %s, version %q", img.Ref, img.Version)
		}
		if cfg := config(t, img); cfg.Config.Labels["org.opencontainers.image.version"] != img.Version || cfg.Config.User != "26:26" {
			t.Errorf("labels %v, user %q", cfg.Config.Labels, cfg.Config.User)
		}
		files := extract(t, img)
		if !strings.Contains(files["etc/passwd"].data, "\npostgres:x:26:26:") ||
			!strings.Contains(files["etc/group"].data, "\npostgres:x:26:\n") ||
			!strings.Contains(files["etc/group"].data, "\ntape:x:990:\n") {
			t.Errorf("passwd/group:\n%s\n%s", files["etc/passwd"].data, files["etc/group"].data)
		}
		expect(t, files, "var/lib/postgresql", tar.TypeDir, -1, 26, 26)
		for n, f := range files {
			if f.typ == tar.TypeReg && (strings.HasPrefix(n, "etc/apt/sources.list") || strings.HasPrefix(n, "var/lib/apt/lists/") && !strings.HasSuffix(n, "/lock") ||
				strings.HasPrefix(n, "usr/share/doc/") || strings.HasPrefix(n, "usr/share/man/") || strings.HasPrefix(n, "usr/share/locale/")) {
				t.Errorf("%s should not be in the image", n)
			}
		}
		imported(t, img)

		// What CloudNativePG does with it: as 26:26, initdb into an empty directory (an emptyDir here),
		// start, query, read the control file, stop.
		data := filepath.Join(t.TempDir(), "data")
		if err := os.Mkdir(data, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(data, 26, 26); err != nil {
			t.Fatal(err)
		}
		// The script's output goes to a file on the mount, read once it has exited: ctr run can return
		// before it has copied the tail of a container's stdout (seen: everything but the last line).
		script := `exec >/var/lib/postgresql/data/script.out 2>&1
set -e
id
postgres --version
for c in initdb pg_ctl pg_controldata pg_basebackup pg_rewind du; do command -v $c; done
export PGDATA=/var/lib/postgresql/data/pgdata
initdb --username=postgres --auth=trust >/tmp/initdb.log || { cat /tmp/initdb.log; exit 1; }
grep -o 'locale "[^"]*"' /tmp/initdb.log
pg_ctl -w -t 60 -l /tmp/pg.log -o "-c listen_addresses= -c unix_socket_directories=/tmp" start >/dev/null || { cat /tmp/pg.log; exit 1; }
psql -h /tmp -U postgres -Atc "select current_user, current_setting('server_version_num')::int / 10000"
pg_controldata | grep '^Database cluster state'
du -s "$PGDATA" >/dev/null
pg_ctl -w -m fast stop >/dev/null
echo ok`
		ctrOut, err := cd.run(img.Ref, "postgres-initdb", []string{"--mount", "type=bind,src=" + data + ",dst=/var/lib/postgresql/data,options=rbind:rw"},
			"sh", "-c", script)
		b, rerr := os.ReadFile(filepath.Join(data, "script.out"))
		if rerr != nil {
			t.Fatalf("the script's output: %v (ctr: %v %s)", rerr, err, ctrOut)
		}
		out := string(b) + ctrOut
		want := []string{
			"uid=26(postgres) gid=26(postgres) groups=26(postgres)", // and ssl-cert, as Debian's postgres
			"postgres (PostgreSQL) 18.",
			"/usr/lib/postgresql/18/bin/initdb", "/usr/lib/postgresql/18/bin/pg_ctl", "/usr/lib/postgresql/18/bin/pg_controldata",
			"/usr/lib/postgresql/18/bin/pg_basebackup", "/usr/lib/postgresql/18/bin/pg_rewind", "/usr/bin/du",
			`locale "C.UTF-8"`,
			"postgres|18",
			"Database cluster state:               in production",
			"ok",
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("missing %q", w)
			}
		}
		if err != nil || t.Failed() {
			t.Fatalf("initdb in the image: %v\n%s", err, out)
		}
		st, err := os.Stat(filepath.Join(data, "pgdata", "PG_VERSION"))
		if err != nil {
			t.Fatal(err)
		}
		if sys := st.Sys().(*syscall.Stat_t); sys.Uid != 26 || sys.Gid != 26 {
			t.Errorf("PG_VERSION owned by %d:%d", sys.Uid, sys.Gid)
		}
	})
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

type file struct {
	typ      byte
	mode     int64
	uid, gid int
	data     string // of small files
}

// extract reads the flattened file system of a cached image (names cleaned: etc/passwd, tmp).
func extract(t *testing.T, img images.Image) map[string]file {
	t.Helper()
	rc := mutate.Extract(image(t, img))
	defer rc.Close()
	tr := tar.NewReader(rc)
	files := map[string]file{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		f := file{typ: h.Typeflag, mode: h.Mode, uid: h.Uid, gid: h.Gid}
		if h.Size < 64<<10 {
			raw, _ := io.ReadAll(tr)
			f.data = string(raw)
		}
		files[h.Name] = f
	}
}

func image(t *testing.T, img images.Image) v1.Image {
	t.Helper()
	tag, err := name.NewTag(img.Ref)
	if err != nil {
		t.Fatal(err)
	}
	i, err := tarball.ImageFromPath(img.Path, &tag)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func config(t *testing.T, img images.Image) *v1.ConfigFile {
	t.Helper()
	cfg, err := image(t, img).ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// expect checks an entry's type, owner and, unless mode is -1, mode.
func expect(t *testing.T, files map[string]file, p string, typ byte, mode int64, uid, gid int) {
	t.Helper()
	f, ok := files[p]
	if !ok {
		t.Errorf("%s missing", p)
		return
	}
	if f.typ != typ || (mode >= 0 && f.mode != mode) || f.uid != uid || f.gid != gid {
		t.Errorf("%s: type %c mode %o owner %d:%d, want %c %o %d:%d", p, f.typ, f.mode, f.uid, f.gid, typ, mode, uid, gid)
	}
}

// waitFor waits until a file contains s.
func waitFor(t *testing.T, path, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		raw, _ := os.ReadFile(path)
		if strings.Contains(string(raw), s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has no %q after 30 s:\n%s", path, s, raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
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
