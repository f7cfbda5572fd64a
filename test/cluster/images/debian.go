package images

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// DebianMirror returns the URI of the Debian archive in the machine's apt sources (the entry for its own
// release, not its security archive), read now so that no mirror is written down anywhere; what names the
// image built through it, in errors. The builders remove the sources.list mmdebstrap writes from it.
func DebianMirror(what string) (string, error) {
	raw, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "", fmt.Errorf("%w: %s is built through the machine's Debian mirror", err, what)
	}
	codename, err := debianCodename(string(raw), what)
	if err != nil {
		return "", err
	}
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	lists, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	for _, f := range append(append([]string{"/etc/apt/sources.list"}, lists...), files...) {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if uri := mirrorIn(string(raw), strings.HasSuffix(f, ".sources"), codename); uri != "" {
			return uri, nil
		}
	}
	return "", fmt.Errorf("no apt source for Debian %s in /etc/apt/sources.list or /etc/apt/sources.list.d: %s is built through the machine's Debian mirror", codename, what)
}

var aptOptions = regexp.MustCompile(`\[[^\]]*\]`)

// debianCodename returns the release codename of an os-release file, refusing a system that is not Debian:
// another distribution's mirror (Ubuntu's included) does not carry Debian's suites, and mmdebstrap would
// fail later with a bare 404.
func debianCodename(osRelease, what string) (string, error) {
	fields := map[string]string{}
	for _, l := range strings.Split(osRelease, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
			fields[k] = strings.Trim(v, `"'`)
		}
	}
	if fields["ID"] != "debian" {
		return "", fmt.Errorf("%s is built through this machine's Debian mirror, and this machine is %q (/etc/os-release "+
			"ID), whose mirror has no Debian suites: run make e2e on Debian", what, fields["ID"])
	}
	if fields["VERSION_CODENAME"] == "" {
		return "", fmt.Errorf("no VERSION_CODENAME in /etc/os-release: %s is built through the machine's Debian mirror, found by its release", what)
	}
	return fields["VERSION_CODENAME"], nil
}

// mirrorIn returns the URI of the first deb entry of an apt source file (one-line format, or deb822 when
// deb822) that serves suite, or "".
func mirrorIn(text string, deb822 bool, suite string) string {
	if !deb822 {
		for _, l := range strings.Split(text, "\n") {
			f := strings.Fields(aptOptions.ReplaceAllString(l, " ")) // deb [signed-by=…] URI suite components
			if len(f) > 2 && f[0] == "deb" && f[2] == suite {
				return f[1]
			}
		}
		return ""
	}
	for _, stanza := range strings.Split(text, "\n\n") {
		fields := map[string]string{}
		for _, l := range strings.Split(stanza, "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && !strings.HasPrefix(l, "#") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if !slices.Contains(strings.Fields(fields["types"]), "deb") || fields["enabled"] == "no" {
			continue
		}
		if uris := strings.Fields(fields["uris"]); len(uris) > 0 && slices.Contains(strings.Fields(fields["suites"]), suite) {
			return uris[0]
		}
	}
	return ""
}
