package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type entry struct {
	typ      byte
	mode     int64
	uid, gid int
	link     string
	data     string
	xattrs   map[string]string
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "tool")
	if err := os.WriteFile(src, []byte("#!/bin/sh\necho hi\n"), 0o750); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(dir, "rootfs.tar")
	writeTar(t, rootfs, false)
	rootfsGz := filepath.Join(dir, "rootfs.tar.gz")
	writeTar(t, rootfsGz, true)

	img := Image{
		Ref: "txmesh.local/test:e2e",
		Layers: []Layer{
			Files{
				{Path: "/usr/local/bin/tool", Source: src},
				{Path: "/etc/passwd", Data: []byte("root:x:0:0::/root:/bin/sh\n")},
				{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
				{Path: "/home/app", Mode: fs.ModeDir | 0o700, UID: 65532, GID: 65532},
				{Path: "/home/app/.keep", Data: []byte{}, Mode: 0o600, UID: 65532, GID: 65532},
				{Path: "/bin/sh", Link: "busybox"},
			},
			TarFile(rootfs),
			TarFile(rootfsGz),
		},
		Entrypoint: []string{"/usr/local/bin/tool"},
		Cmd:        []string{"serve"},
		User:       "65532:65532",
		Env:        []string{"PATH=/usr/bin:/bin"},
		WorkingDir: "/home/app",
		Ports:      []string{"8080", "53/udp"},
		Labels:     map[string]string{"a": "b"},
	}
	out := filepath.Join(dir, "image.tar")
	id, err := WriteFile(out, img)
	if err != nil {
		t.Fatal(err)
	}

	tag, _ := name.NewTag(img.Ref)
	got, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatal(err)
	}
	checkDigests(t, got)
	if cfgName, _ := got.ConfigName(); cfgName.String() != id {
		t.Errorf("id %s, config %s", id, cfgName)
	}
	cfg, err := got.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s", cfg.OS, cfg.Architecture)
	}
	if !cfg.Created.Equal(Epoch) {
		t.Errorf("created %v", cfg.Created)
	}
	c := cfg.Config
	want := v1.Config{
		Entrypoint: img.Entrypoint, Cmd: img.Cmd, User: img.User, Env: img.Env, WorkingDir: img.WorkingDir,
		ExposedPorts: map[string]struct{}{"8080/tcp": {}, "53/udp": {}}, Labels: img.Labels,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("config\n got %+v\nwant %+v", c, want)
	}
	if tags := repoTags(t, out); !reflect.DeepEqual(tags, []string{img.Ref}) {
		t.Errorf("RepoTags %v", tags)
	}

	layers, err := got.Layers()
	if err != nil || len(layers) != 3 {
		t.Fatalf("layers %d, %v", len(layers), err)
	}
	wantFiles := map[string]entry{
		"etc/":                {typ: tar.TypeDir, mode: 0o755},
		"etc/passwd":          {typ: tar.TypeReg, mode: 0o644, data: "root:x:0:0::/root:/bin/sh\n"},
		"bin/":                {typ: tar.TypeDir, mode: 0o755},
		"bin/sh":              {typ: tar.TypeSymlink, mode: 0o777, link: "busybox"},
		"home/":               {typ: tar.TypeDir, mode: 0o755},
		"home/app/":           {typ: tar.TypeDir, mode: 0o700, uid: 65532, gid: 65532},
		"home/app/.keep":      {typ: tar.TypeReg, mode: 0o600, uid: 65532, gid: 65532},
		"tmp/":                {typ: tar.TypeDir, mode: 0o1777},
		"usr/":                {typ: tar.TypeDir, mode: 0o755},
		"usr/local/":          {typ: tar.TypeDir, mode: 0o755},
		"usr/local/bin/":      {typ: tar.TypeDir, mode: 0o755},
		"usr/local/bin/tool":  {typ: tar.TypeReg, mode: 0o750, data: "#!/bin/sh\necho hi\n"},
		"./":                  {typ: tar.TypeDir, mode: 0o755},
		"./usr/":              {typ: tar.TypeDir, mode: 0o755},
		"./usr/bin/":          {typ: tar.TypeDir, mode: 0o755},
		"./usr/bin/ping":      {typ: tar.TypeReg, mode: 0o755, data: "ELF", xattrs: map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}},
		"./usr/bin/ping4":     {typ: tar.TypeLink, link: "./usr/bin/ping"},
		"./var/":              {typ: tar.TypeDir, mode: 0o755},
		"./var/lib/":          {typ: tar.TypeDir, mode: 0o755},
		"./var/lib/postgres/": {typ: tar.TypeDir, mode: 0o700, uid: 26, gid: 26},
	}
	if _, names := readLayer(t, layers[0]); strings.Join(names, " ") != "bin/ bin/sh etc/ etc/passwd home/ home/app/ home/app/.keep tmp/ usr/ usr/local/ usr/local/bin/ usr/local/bin/tool" {
		t.Errorf("files layer order: %v", names)
	}
	for i, l := range layers {
		entries, _ := readLayer(t, l)
		for n, e := range entries {
			if w, ok := wantFiles[n]; !ok || !reflect.DeepEqual(e, w) {
				t.Errorf("layer %d: %s = %+v, want %+v", i, n, e, w)
			}
		}
	}
	if a, b := digest(t, layers[1]), digest(t, layers[2]); a != b {
		t.Errorf("a tar and its gzip give different layers: %s %s", a, b)
	}
}

func TestWriteFileIsDeterministic(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "bin")
	write := func(out string) (string, []byte) {
		t.Helper()
		img := Image{
			Ref:    "txmesh.local/test:1",
			Layers: []Layer{Files{{Path: "/bin/app", Source: src, Mode: 0o755}, {Path: "/b", Data: []byte("b")}, {Path: "/a", Data: []byte("a")}}},
			Cmd:    []string{"/bin/app"},
		}
		id, err := WriteFile(out, img)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return id, b
	}
	if err := os.WriteFile(src, bytes.Repeat([]byte("x"), 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	id1, b1 := write(filepath.Join(dir, "1.tar"))
	if err := os.Chtimes(src, time.Now(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	id2, b2 := write(filepath.Join(dir, "2.tar"))
	if id1 != id2 || !bytes.Equal(b1, b2) {
		t.Errorf("same inputs, different archives: %s %s", id1, id2)
	}
}

// TestTarFileStreams copies a 128 MiB entry and checks that the process did not allocate anything
// near that size.
func TestTarFileStreams(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.tar")
	const size = 128 << 20
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	if err := tw.WriteHeader(&tar.Header{Name: "./big", Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(tw, zeros{}, size); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := WriteFile(filepath.Join(dir, "image.tar"), Image{Ref: "txmesh.local/big:1", Layers: []Layer{TarFile(big)}}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
		t.Errorf("allocated %d MiB for a %d MiB layer", alloc>>20, size>>20)
	}
}

func TestWriteFileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		img  Image
		want string
	}{
		{Image{Ref: "txmesh.local/test"}, "must be a name with a tag"},
		{Image{Ref: "t.local/x:1", Layers: []Layer{Files{{Path: "bin/x"}}}}, "must be absolute"},
		{Image{Ref: "t.local/x:1", Layers: []Layer{Files{{Path: "/x"}, {Path: "/x/"}}}}, "listed twice"},
		{Image{Ref: "t.local/x:1", Layers: []Layer{Files{{Path: "/x"}, {Path: "/x/y"}}}}, "needs /x to be a directory"},
		{Image{Ref: "t.local/x:1", Layers: []Layer{Files{{Path: "/x", Source: filepath.Join(dir, "nope")}}}}, "no such file"},
		{Image{Ref: "t.local/x:1", Layers: []Layer{TarFile(filepath.Join(dir, "nope.tar"))}}, "no such file"},
	} {
		if _, err := WriteFile(filepath.Join(dir, "out.tar"), tc.img); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.img, err, tc.want)
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// writeTar writes a small rootfs as mmdebstrap does: ./-prefixed names, a hard link, a capability.
func writeTar(t *testing.T, path string, gz bool) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	for _, h := range []*tar.Header{
		{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now},
		{Name: "./usr/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now},
		{Name: "./usr/bin/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now},
		{Name: "./usr/bin/ping", Typeflag: tar.TypeReg, Mode: 0o755, Size: 3, ModTime: now, AccessTime: now,
			Format: tar.FormatPAX, PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}},
		{Name: "./usr/bin/ping4", Typeflag: tar.TypeLink, Linkname: "./usr/bin/ping", ModTime: now},
		{Name: "./var/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now},
		{Name: "./var/lib/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now},
		{Name: "./var/lib/postgres/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: 26, Gid: 26, ModTime: now},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte("ELF")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	if gz {
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		if _, err := zw.Write(data); err != nil || zw.Close() != nil {
			t.Fatal("gzip", err)
		}
		data = zb.Bytes()
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// readLayer returns a layer's entries and their order, and checks every time is Epoch.
func readLayer(t *testing.T, l v1.Layer) (map[string]entry, []string) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	out := map[string]entry{}
	var order []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, order
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(Epoch) || !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
			t.Errorf("%s: times %v %v %v", h.Name, h.ModTime, h.AccessTime, h.ChangeTime)
		}
		data, _ := io.ReadAll(tr)
		e := entry{typ: h.Typeflag, mode: h.Mode, uid: h.Uid, gid: h.Gid, link: h.Linkname, data: string(data)}
		for k, v := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				if e.xattrs == nil {
					e.xattrs = map[string]string{}
				}
				e.xattrs[k] = v
			}
		}
		out[h.Name] = e
		order = append(order, h.Name)
	}
}

func digest(t *testing.T, l v1.Layer) v1.Hash {
	t.Helper()
	d, err := l.DiffID()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func repoTags(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("manifest.json: %v", err)
		}
		if h.Name != "manifest.json" {
			continue
		}
		var m []struct{ RepoTags []string }
		if err := json.NewDecoder(tr).Decode(&m); err != nil || len(m) != 1 {
			t.Fatalf("manifest.json: %v %d", err, len(m))
		}
		return m[0].RepoTags
	}
}

// checkDigests recomputes every digest the archive declares.
func checkDigests(t *testing.T, img v1.Image) {
	t.Helper()
	hashOf := func(open func() (io.ReadCloser, error)) string {
		rc, err := open()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		h := sha256.New()
		if _, err := io.Copy(h, rc); err != nil {
			t.Fatal(err)
		}
		return "sha256:" + hex.EncodeToString(h.Sum(nil))
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cn, _ := img.ConfigName(); cn.String() != fmt.Sprintf("sha256:%x", sha256.Sum256(raw)) {
		t.Errorf("config digest %s", cn)
	}
	cfg, _ := img.ConfigFile()
	layers, _ := img.Layers()
	if len(cfg.RootFS.DiffIDs) != len(layers) {
		t.Fatalf("%d diff_ids for %d layers", len(cfg.RootFS.DiffIDs), len(layers))
	}
	for i, l := range layers {
		d, _ := l.Digest()
		if got := hashOf(l.Compressed); got != d.String() {
			t.Errorf("layer %d: digest %s, content %s", i, d, got)
		}
		if got := hashOf(l.Uncompressed); got != cfg.RootFS.DiffIDs[i].String() {
			t.Errorf("layer %d: diff_id %s, content %s", i, cfg.RootFS.DiffIDs[i], got)
		}
	}
}
