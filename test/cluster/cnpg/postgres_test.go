package cnpg

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The shipped image's cache key is the one every make e2e before the upgrade's images used (its entry
// 18-forky-531e2a0176adc729 in the cache): adding specs rebuilt nothing, and the image is the one measured.
func TestShippedPostgresKeyUnchanged(t *testing.T) {
	args, key := postgresRecipe(Shipped)
	if got := key[:16]; got != "531e2a0176adc729" {
		t.Errorf("Shipped key %s…, want 531e2a0176adc729…", got)
	}
	if Shipped.Ref() != "txmesh.local/postgresql:18-forky" || !slices.Contains(args, "--include=postgresql-18") {
		t.Errorf("ref %s, args %q", Shipped.Ref(), args)
	}
	for _, a := range args {
		if strings.Contains(a, "pg_upgrade") || strings.Contains(a, "Default-Release") {
			t.Errorf("the shipped recipe has an upgrade's argument: %q", a)
		}
	}
}

// CloudNativePG reads an image's major from the leading digits of its tag (machinery's version.FromTag:
// `^(\d\.?)+`); the upgrade's images name the majors the scenario expects, and differ from the shipped one.
func TestPostgresSpecsNameTheirMajor(t *testing.T) {
	major := regexp.MustCompile(`^(\d+)`)
	for _, s := range []PostgresSpec{Shipped, UpgradeFrom, UpgradeTo} {
		tag := s.Ref()[strings.LastIndex(s.Ref(), ":")+1:]
		if m := major.FindString(tag); m != s.Major {
			t.Errorf("%s: the operator reads major %q, spec says %s", s.Ref(), m, s.Major)
		}
	}
	if UpgradeFrom.Ref() != "txmesh.local/postgresql:17-trixie" || UpgradeTo.Ref() != "txmesh.local/postgresql:18-forky-from17" {
		t.Errorf("refs %s, %s", UpgradeFrom.Ref(), UpgradeTo.Ref())
	}
	if UpgradeTo.Major != Shipped.Major {
		t.Errorf("the upgrade's target is %s, the shipped major %s: the row's roll to Shipped would be a second major upgrade", UpgradeTo.Major, Shipped.Major)
	}
}

// The pinned spec installs both of its packages at the pin (by the files fetched) and keys on their hashes;
// the target carries the compatibility packages from trixie with forky as apt's default release and checks
// their sonames and the upgrade's tools after the build.
func TestPostgresUpgradeRecipes(t *testing.T) {
	args, key := postgresRecipe(UpgradeFrom)
	if args[2] != "--include=postgresql-17=17.11-0+deb13u1,postgresql-client-17=17.11-0+deb13u1" {
		t.Errorf("include %q", args[2])
	}
	for _, f := range pinnedDebs(UpgradeFrom) {
		if len(UpgradeFrom.PinSHA256[f]) != 64 {
			t.Errorf("no SHA-256 pinned for %s", f)
		}
	}
	hook := args[len(args)-1]
	for _, want := range []string{"--customize-hook=", "pg_config pg_upgrade", `test -x "$r/usr/bin/cp"`, "/usr/lib/postgresql/17/bin/"} {
		if !strings.Contains(hook, want) {
			t.Errorf("17's upgrade hook lacks %q:\n%s", want, hook)
		}
	}
	other := UpgradeFrom
	other.PinSHA256 = map[string]string{pinnedDebs(UpgradeFrom)[0]: strings.Repeat("0", 64)}
	if _, k := postgresRecipe(other); k == key {
		t.Error("the key does not change with the pinned hashes")
	}

	args, _ = postgresRecipe(UpgradeTo)
	if args[2] != "--include=postgresql-18,libicu76,libxml2" || !slices.Contains(args, `--aptopt=APT::Default-Release "forky"`) {
		t.Errorf("args %q", args[:5])
	}
	hook = args[len(args)-1]
	for _, so := range []string{"libicuuc.so.76", "libicui18n.so.76", "libxml2.so.2"} {
		if !strings.Contains(hook, `ls "$r"/usr/lib/*/`+so+" ") {
			t.Errorf("18's upgrade hook does not check %s:\n%s", so, hook)
		}
	}
}
