package images

import (
	"io/fs"

	"github.com/txmesh/txmesh/test/cluster/oci"
)

// CACerts is where Debian and distroless keep the CA bundle.
const CACerts = "/etc/ssl/certs/ca-certificates.crt"

// StaticEnv is distroless static's environment.
var StaticEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"SSL_CERT_FILE=" + CACerts,
}

// StaticBase is what gcr.io/distroless/static-debian12:nonroot provides that a static Go binary may use:
// users root, nobody and nonroot (65532) with their homes, /tmp, the CA bundle (the machine's) and
// nsswitch.conf. No tzdata: the binaries do not load zones.
func StaticBase() oci.Files {
	return oci.Files{
		{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/sbin/nologin\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
			"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{Path: "/etc/group", Data: []byte("root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n")},
		{Path: "/etc/nsswitch.conf", Data: []byte("hosts: files dns\n")},
		{Path: CACerts, Source: CACerts, Mode: 0o644},
		{Path: "/root", Mode: fs.ModeDir | 0o700},
		{Path: "/home/nonroot", Mode: fs.ModeDir | 0o700, UID: 65532, GID: 65532},
		{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
	}
}
