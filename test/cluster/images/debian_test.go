package images

import (
	"strings"
	"testing"
)

// The image builders' mirror is the machine's Debian archive for its own release: not its security
// archive, not a disabled entry, options and comments skipped, one-line and deb822 formats alike.
func TestMirrorIn(t *testing.T) {
	for _, c := range []struct {
		name, text string
		deb822     bool
		want       string
	}{
		{"one-line", "# deb http://old.example/debian bookworm main\ndeb http://sec.example/debian-security bookworm-security main\n" +
			"deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n", false, "http://mirror.example/debian"},
		{"one-line, other release", "deb http://mirror.example/debian trixie main\n", false, ""},
		{"deb822", "Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n" +
			"Types: deb deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n", true, "http://mirror.example/debian"},
		{"deb822, disabled", "Types: deb\nEnabled: no\nURIs: http://mirror.example/debian\nSuites: bookworm\n", true, ""},
		{"deb822, sources only", "Types: deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm\n", true, ""},
	} {
		if got := mirrorIn(c.text, c.deb822, "bookworm"); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// The mirror is found by the machine's Debian release; another distribution is refused by name, before
// mmdebstrap would ask its mirror for a Debian suite.
func TestDebianCodename(t *testing.T) {
	if c, err := debianCodename("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n", "x"); err != nil || c != "bookworm" {
		t.Errorf("debian: %q, %v", c, err)
	}
	if _, err := debianCodename("ID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n", "x"); err == nil ||
		!strings.Contains(err.Error(), `this machine is "ubuntu"`) {
		t.Errorf("ubuntu: %v, want it refused by name", err)
	}
	if _, err := debianCodename("ID=debian\n", "x"); err == nil || !strings.Contains(err.Error(), "VERSION_CODENAME") {
		t.Errorf("no codename: %v", err)
	}
}
