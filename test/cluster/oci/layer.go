package oci

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
)

// File is one entry of a Files layer: a regular file (Data or Source), a directory (Mode has fs.ModeDir)
// or a symbolic link (Link set).
type File struct {
	Path     string      // absolute path in the image, e.g. /bank
	Mode     fs.FileMode // permission bits (setuid, setgid, sticky included), plus fs.ModeDir for a directory; 0: see below
	UID, GID int
	Data     []byte // content held in memory, or
	Source   string // a file on disk, streamed when the layer is written
	Link     string // symbolic link target
}

// Files is a layer built from File entries. Missing parent directories are added (0755, root); entries
// are written sorted by path. Mode 0 means 0755 for a directory, the source's permissions for a Source
// file and 0644 for Data.
type Files []File

func (fl Files) writeTo(tw *tar.Writer) error {
	entries := map[string]File{}
	for _, f := range fl {
		p := path.Clean("/" + f.Path)
		if p == "/" || f.Path == "" || !path.IsAbs(f.Path) {
			return fmt.Errorf("file path %q must be absolute and not /", f.Path)
		}
		if _, dup := entries[p]; dup {
			return fmt.Errorf("%s listed twice", p)
		}
		if n := btoi(f.Data != nil) + btoi(f.Source != "") + btoi(f.Link != "") + btoi(f.Mode.IsDir()); n > 1 {
			return fmt.Errorf("%s: set one of Data, Source, Link or fs.ModeDir", p)
		}
		f.Path = p
		entries[p] = f
	}
	for p := range entries {
		for dir := path.Dir(p); dir != "/"; dir = path.Dir(dir) {
			if e, ok := entries[dir]; ok {
				if !e.Mode.IsDir() {
					return fmt.Errorf("%s needs %s to be a directory", p, dir)
				}
				continue
			}
			entries[dir] = File{Path: dir, Mode: fs.ModeDir | 0o755}
		}
	}
	paths := make([]string, 0, len(entries))
	for p := range entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if err := writeFile(tw, entries[p]); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func writeFile(tw *tar.Writer, f File) error {
	h := &tar.Header{Name: strings.TrimPrefix(f.Path, "/"), Uid: f.UID, Gid: f.GID, ModTime: Epoch, Format: tar.FormatPAX}
	perm := f.Mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	var body io.Reader
	switch {
	case f.Mode.IsDir():
		h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		if perm == 0 {
			perm = 0o755
		}
	case f.Link != "":
		h.Typeflag, h.Linkname, perm = tar.TypeSymlink, f.Link, 0o777
	case f.Source != "":
		src, err := os.Open(f.Source)
		if err != nil {
			return err
		}
		defer src.Close()
		st, err := src.Stat()
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("source %s is not a regular file", f.Source)
		}
		if perm == 0 {
			perm = st.Mode().Perm()
		}
		h.Typeflag, h.Size, body = tar.TypeReg, st.Size(), bufio.NewReaderSize(src, 1<<20)
	default:
		if perm == 0 {
			perm = 0o644
		}
		h.Typeflag, h.Size, body = tar.TypeReg, int64(len(f.Data)), bytes.NewReader(f.Data)
	}
	h.Mode = tarMode(perm)
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if body == nil {
		return nil
	}
	n, err := io.Copy(tw, body)
	if err == nil && n != h.Size {
		err = fmt.Errorf("source changed while read (%d of %d bytes)", n, h.Size)
	}
	return err
}

// tarMode converts Go's permission bits to tar's (setuid 04000, setgid 02000, sticky 01000).
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// TarFile is a layer copied from an existing tar file (plain or gzip), e.g. mmdebstrap's output, entry by
// entry: names, owners, modes, links and extended attributes are kept, times are set to Epoch.
type TarFile string

func (t TarFile) writeTo(tw *tar.Writer) error {
	f, err := os.Open(string(t))
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
		defer zr.Close()
		r = zr
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
		out := &tar.Header{
			Typeflag: h.Typeflag, Name: h.Name, Linkname: h.Linkname, Size: h.Size, Mode: h.Mode,
			Uid: h.Uid, Gid: h.Gid, Uname: h.Uname, Gname: h.Gname, ModTime: Epoch,
			Devmajor: h.Devmajor, Devminor: h.Devminor, Format: tar.FormatPAX,
		}
		for k, v := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") { // file capabilities, ACLs
				if out.PAXRecords == nil {
					out.PAXRecords = map[string]string{}
				}
				out.PAXRecords[k] = v
			}
		}
		if out.Typeflag == tar.TypeGNUSparse {
			out.Typeflag = tar.TypeReg // the reader has expanded the holes
		}
		if err := tw.WriteHeader(out); err != nil {
			return fmt.Errorf("%s: %s: %w", t, h.Name, err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return fmt.Errorf("%s: %s: %w", t, h.Name, err)
		}
	}
}
