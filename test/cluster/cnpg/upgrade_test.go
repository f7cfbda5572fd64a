package cnpg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/txmesh/txmesh/test/cluster/images"
)

// TestMajorUpgradeOffline is CloudNativePG 1.30's in-place major upgrade of bank-db from UpgradeFrom to
// UpgradeTo, done by hand on the images' root file systems, without a cluster: what the Job
// <cluster>-<serial>-major-upgrade does (pkg/reconciler/majorupgrade/job.go), step for step, with its paths,
// its initdb and pg_upgrade flags, as uid 26:
//
//  1. before it, the primary ran the old image: `instance init` had run initdb with the flags it builds for
//     bank-db's bootstrap (pkg/specs/jobs.go buildInitDBFlags, defaults of api/v1/cluster_defaults.go:
//     UTF8, C collation and ctype), into /var/lib/postgresql/data/pgdata on the PVC; the Bank's migrations
//     and rows are written to it;
//  2. init container "prepare", the OLD image, /controller an emptyDir: `instance upgrade prepare
//     /controller/old` (internal/cmd/manager/instance/upgrade/prepare/cmd.go) copies pg_config's --bindir,
//     --pkglibdir and --sharedir with `cp -a dir/. /controller/old<dir>` and writes bindir.txt;
//  3. container "major-upgrade", the NEW image: `instance upgrade execute /controller/old/bindir.txt`
//     (…/upgrade/execute/cmd.go): the old pg_controldata reads the WAL segment size and checksum version,
//     initdb --username postgres -D pgdata-new --wal-segsize=N (--data-checksums, or --no-data-checksums
//     from 18 on), umask 077; the configuration includes custom.conf and override.conf
//     (max_slot_wal_keep_size -1, idle_replication_slot_timeout 0 on 18); pg_upgrade --link --username
//     postgres --old-bindir <bindir.txt> --old-datadir pgdata --new-datadir pgdata-new, run in pgdata-new;
//     delete_old_cluster.sh removed, pgdata renamed pgdata.old, pgdata-new renamed pgdata, pgdata.old removed;
//  4. the new primary starts from the new image: every row is there, server_version is 18.
//
// What it leaves out: the operator's Kubernetes side (certificates, the plugin client, the instance
// manager's configuration beyond the parameters below), none of which pg_upgrade reads.
//
// It can fail, and fails where the images are wrong: TXMESH_UPGRADE_NEGATIVES=1 runs both cases (passed on
// 2026-12-07, 47 s warm). The shipped 18 image as the target, without trixie's libraries: pg_upgrade's
// check of the old binaries stops at "/controller/old/usr/lib/postgresql/17/bin/postgres: error while
// loading shared libraries: libxml2.so.2". Trixie's current 17.12 as the source (its own image,
// 17-trixie-current, 74 s to build): pg_upgrade fails at "Restoring database schemas in the new cluster",
// its dump of bank holding `ALTER TABLE ONLY "public"."accounts" ALTER COLUMN "balance" SET
// (pg_attver=26473480)`, which 18.6 refuses. Run by default: the upgrade that must work (19 s warm).
//
// Root (chroot, mounts, uid 26) and the Debian mirror for a cold build (1-2 minutes an image).
func TestMajorUpgradeOffline(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("needs root (chroot, mounts, uid 26): run it as make e2e does, as root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	b := &images.Builder{Log: testLog{t}}
	from, to := rootfs(ctx, t, b, UpgradeFrom), rootfs(ctx, t, b, UpgradeTo)
	out, err := upgradeOffline(ctx, t, from, to)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("upgraded %s to %s: %s", UpgradeFrom.Ref(), UpgradeTo.Ref(), out)

	if os.Getenv("TXMESH_UPGRADE_NEGATIVES") == "" {
		return
	}
	// The same upgrade must fail without the compatibility libraries: the shipped image as the target.
	t.Run("target-without-compat-libraries", func(t *testing.T) {
		if _, err := upgradeOffline(ctx, t, from, rootfs(ctx, t, b, Shipped)); err == nil || !strings.Contains(err.Error(), "error while loading shared libraries") {
			t.Errorf("upgrade into %s: %v, want the old binaries failing to load their libraries", Shipped.Ref(), err)
		} else {
			t.Logf("fails as it must: %v", tail(err.Error(), 600))
		}
	})
	// … and from trixie's current 17.12.
	t.Run("source-17.12", func(t *testing.T) {
		current := PostgresSpec{Major: "17", Suite: "trixie", Tag: "trixie-current"}
		if _, err := upgradeOffline(ctx, t, rootfs(ctx, t, b, current), to); err == nil || !strings.Contains(err.Error(), "Restoring database schemas") {
			t.Errorf("upgrade from %s: %v, want pg_upgrade failing at restoring the schemas", current.Ref(), err)
		} else {
			t.Logf("fails as it must: %v", tail(err.Error(), 600))
		}
	})
}

// The parameters bank-db's Cluster sets (kustomize/base and the e2e overlay) and those of CloudNativePG's
// own configuration that concern pg_upgrade, in custom.conf as the instance manager writes them.
const upgradeConf = `max_connections = 100
shared_buffers = 128MB
track_commit_timestamp = on
wal_level = logical
archive_mode = on
archive_command = '/bin/true'
hot_standby = on
`

// upgradeOffline runs the upgrade of the doc comment above from the old root file system to the new one and
// returns the new server's version and what it checked.
func upgradeOffline(ctx context.Context, t *testing.T, from, to string) (string, error) {
	t.Helper()
	work := t.TempDir()
	pvc, controller := filepath.Join(work, "pvc"), filepath.Join(work, "controller")
	for _, d := range []string{pvc, controller} {
		if err := os.Mkdir(d, 0o777); err != nil { // an emptyDir's mode; the PVC's directory as local-path makes it
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	migrations, err := bankMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pvc, "bank.sql"), []byte(migrations), 0o644); err != nil {
		t.Fatal(err)
	}

	// 1. bank-db's primary on the old major: initdb as CloudNativePG bootstraps it, the Bank's schema, rows.
	old, err := inImage(ctx, from, pvc, controller, 17, `
umask 077
initdb --username postgres -D "$PGDATA" --encoding=UTF8 --lc-collate=C --lc-ctype=C >/tmp/initdb.log 2>&1 || { cat /tmp/initdb.log; exit 1; }
printf "include 'custom.conf'\ninclude 'override.conf'\n" >>"$PGDATA/postgresql.conf"
cat >"$PGDATA/custom.conf" <<'EOF'
`+upgradeConf+`EOF
: >"$PGDATA/override.conf"
pg_ctl -w -t 120 -l /tmp/pg.log -o "-c listen_addresses= -c unix_socket_directories=/tmp" start >/dev/null || { cat /tmp/pg.log; exit 1; }
psql -X -q -v ON_ERROR_STOP=1 -h /tmp -U postgres -c "CREATE ROLE bank LOGIN" -c "CREATE DATABASE bank OWNER bank"
psql -X -q -v ON_ERROR_STOP=1 -h /tmp -U postgres -d bank -c "SET ROLE bank" -f /var/lib/postgresql/data/bank.sql
psql -X -q -v ON_ERROR_STOP=1 -h /tmp -U bank -d bank <<'EOF'
INSERT INTO accounts (id, currency, balance, initial_balance)
  SELECT 'ACC-' || lpad(i::text, 6, '0'), 'EUR', 100000000, 100000000 FROM generate_series(1, 100) i;
INSERT INTO transactions (id, store_id, account_id, amount, currency, created_at, status, caller)
  SELECT md5(i::text)::uuid, 'store-1', 'ACC-' || lpad((i % 100 + 1)::text, 6, '0'), 1 + i % 5000, 'EUR', now(), 'approved', 'store'
  FROM generate_series(1, 5000) i;
UPDATE accounts a SET balance = initial_balance - d.sum
  FROM (SELECT account_id, sum(amount) FROM transactions GROUP BY account_id) d WHERE d.account_id = a.id;
EOF
echo "version=$(psql -X -At -h /tmp -U postgres -c 'SHOW server_version')"
echo "rows=$(psql -X -At -h /tmp -U postgres -d bank -c "`+fingerprint+`")"
pg_ctl -w -m fast stop >/dev/null
echo "sysid=$(pg_controldata | sed -n 's/^Database system identifier: *//p')"
echo "wal=$(pg_controldata | sed -n "s/^Latest checkpoint's REDO WAL file: *//p")"
`)
	if err != nil {
		return "", fmt.Errorf("the old primary: %w", err)
	}
	if !regexp.MustCompile(`(?m)^version=17\.`).MatchString(old) {
		return "", fmt.Errorf("the old primary is not 17:\n%s", old)
	}

	// 2. "prepare", from the old image.
	if _, err := inImage(ctx, from, pvc, controller, 17, `
rm -rf /controller/old
mkdir -p -m 0750 /controller/old
echo "/controller/old$(pg_config --bindir)" >/controller/old/bindir.txt
for d in "$(pg_config --bindir)" "$(pg_config --pkglibdir)" "$(pg_config --sharedir)"; do
  mkdir -p -m 0750 "/controller/old$d"
  cp -a "$d/." "/controller/old$d"
done
`); err != nil {
		return "", fmt.Errorf("prepare (the old image): %w", err)
	}

	// 3. "major-upgrade", from the new image.
	if _, err := inImage(ctx, to, pvc, controller, 18, `
old=$(cat /controller/old/bindir.txt)
new="$PGDATA-new"
rm -rf "$new"
"$old/pg_controldata" >/tmp/controldata 2>&1 || { cat /tmp/controldata; exit 1; }
seg=$(sed -n 's/^Bytes per WAL segment: *//p' /tmp/controldata)
case "$(sed -n 's/^Data page checksum version: *//p' /tmp/controldata)" in
  1) checksums=--data-checksums ;;
  *) checksums=--no-data-checksums ;;
esac
umask 077
initdb --username postgres -D "$new" --wal-segsize=$((seg / 1048576)) $checksums >/tmp/initdb.log 2>&1 || { cat /tmp/initdb.log; exit 1; }
printf "include 'custom.conf'\ninclude 'override.conf'\n" >>"$new/postgresql.conf"
cat >"$new/custom.conf" <<'EOF'
`+upgradeConf+`max_slot_wal_keep_size = -1
idle_replication_slot_timeout = 0
EOF
: >"$new/override.conf"
chmod 0700 "$PGDATA" "$new"
cd "$new"
if ! pg_upgrade --link --username postgres --old-bindir "$old" --old-datadir "$PGDATA" --new-datadir "$new" >/tmp/pg_upgrade.out 2>&1; then
  cat /tmp/pg_upgrade.out
  for f in $(ls -t "$new"/pg_upgrade_output.d/*/log/*.log 2>/dev/null | head -3); do echo "== $f"; tail -5 "$f"; done
  exit 1
fi
rm -f "$new/delete_old_cluster.sh"
cd /
mv "$PGDATA" "$PGDATA.old"
mv "$new" "$PGDATA"
rm -rf "$PGDATA.old"
`); err != nil {
		return "", fmt.Errorf("major-upgrade (the new image): %w", err)
	}

	// 4. The new primary.
	now, err := inImage(ctx, to, pvc, controller, 18, `
pg_ctl -w -t 120 -l /tmp/pg.log -o "-c listen_addresses= -c unix_socket_directories=/tmp" start >/dev/null || { cat /tmp/pg.log; exit 1; }
echo "version=$(psql -X -At -h /tmp -U postgres -c 'SHOW server_version')"
echo "rows=$(psql -X -At -h /tmp -U postgres -d bank -c "`+fingerprint+`")"
pg_ctl -w -m fast stop >/dev/null
echo "sysid=$(pg_controldata | sed -n 's/^Database system identifier: *//p')"
echo "timeline=$(pg_controldata | sed -n "s/^Latest checkpoint's TimeLineID: *//p")"
echo "wal=$(pg_controldata | sed -n "s/^Latest checkpoint's REDO WAL file: *//p")"
`)
	if err != nil {
		return "", fmt.Errorf("the new primary: %w", err)
	}
	field := func(out, k string) string {
		m := regexp.MustCompile(`(?m)^` + k + `=(.*)$`).FindStringSubmatch(out)
		if m == nil {
			return ""
		}
		return m[1]
	}
	if v := field(now, "version"); !strings.HasPrefix(v, "18.") {
		return "", fmt.Errorf("server_version %q after the upgrade, want 18.x:\n%s", v, now)
	}
	if r := field(now, "rows"); r == "" || r != field(old, "rows") {
		return "", fmt.Errorf("rows before %q, after %q", field(old, "rows"), r)
	}
	// What the WAL archive sees (docs/operations.md, major upgrade): another system, timeline 1, and WAL
	// file names that go on after the old system's last (pg_upgrade sets the new one's next segment).
	if field(now, "sysid") == field(old, "sysid") || field(now, "timeline") != "1" || field(now, "wal") <= field(old, "wal") {
		return "", fmt.Errorf("system identifier %s → %s, timeline %s, WAL %s → %s: not a new system on timeline 1 after the old WAL",
			field(old, "sysid"), field(now, "sysid"), field(now, "timeline"), field(old, "wal"), field(now, "wal"))
	}
	return fmt.Sprintf("server_version %s → %s; rows %s unchanged; system identifier %s → %s, timeline %s, WAL %s → %s",
		field(old, "version"), field(now, "version"), field(now, "rows"), field(old, "sysid"), field(now, "sysid"), field(now, "timeline"),
		field(old, "wal"), field(now, "wal")), nil
}

// fingerprint sums up the ledger: row counts, the sum of balances and a hash of every row of both tables.
const fingerprint = `SELECT (SELECT count(*) FROM accounts) || ' accounts, ' || (SELECT count(*) FROM transactions) || ' transactions, balance ' || ` +
	`(SELECT sum(balance) FROM accounts) || ', md5 ' || (SELECT md5(string_agg(a::text, ',' ORDER BY id)) FROM accounts a) || '/' || ` +
	`(SELECT md5(string_agg(x::text, ',' ORDER BY id)) FROM transactions x)`

// bankMigrations is the Up part of each of the Bank's migrations (goose's files), in order.
func bankMigrations() (string, error) {
	files, err := filepath.Glob("../../../src/internal/bank/migrations/*.sql")
	if err != nil {
		return "", fmt.Errorf("the Bank's migrations: %w", err)
	}
	if len(files) == 0 {
		return "", errors.New("the Bank's migrations: no src/internal/bank/migrations/*.sql")
	}
	var sql strings.Builder
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		up, _, _ := strings.Cut(string(raw), "-- +goose Down")
		sql.WriteString(up + "\n")
	}
	return sql.String(), nil
}

// rootfs builds (or finds cached) the image of s and extracts its root file system, owners and modes kept.
func rootfs(ctx context.Context, t *testing.T, b *images.Builder, s PostgresSpec) string {
	t.Helper()
	img, err := PostgresImage(ctx, b, s)
	if err != nil {
		t.Fatal(err)
	}
	v1img, err := img.Open()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rc := mutate.Extract(v1img)
	defer rc.Close()
	cmd := exec.CommandContext(ctx, "tar", "-x", "-p", "--numeric-owner", "-C", dir, "-f", "-")
	cmd.Stdin = rc
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("extract %s: %v\n%s", img.Ref, err, out)
	}
	return dir
}

// inImage runs script with sh as 26:26 (postgres) chrooted into root, with the image's PATH for major,
// LANG=C.UTF-8 and PGDATA as a CloudNativePG instance has them; the PVC's directory is mounted at
// /var/lib/postgresql/data and controller at /controller, as in the Job's pod. It runs in its own mount
// and PID namespaces: its mounts never reach the host, and every process it started (a server it left
// running included) dies with it. Returns standard output and error together.
func inImage(ctx context.Context, root, pvc, controller string, major int, script string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	const outer = `set -eu
mount --make-rprivate /
mkdir -p "$R/var/lib/postgresql/data" "$R/controller" "$R/proc" "$R/dev"
mount --bind "$PVC" "$R/var/lib/postgresql/data"
mount --bind "$CTL" "$R/controller"
mount -t proc proc "$R/proc"
mount -t tmpfs -o mode=0755 tmpfs "$R/dev"
for d in null zero full random urandom; do touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done
mkdir -m 1777 "$R/dev/shm"
mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
exec chroot --userspec=26:26 "$R" /usr/bin/env -i PATH="$IMAGE_PATH" LANG=C.UTF-8 HOME=/var/lib/postgresql \
  PGDATA=/var/lib/postgresql/data/pgdata /bin/sh -euc "$SCRIPT"
`
	cmd := exec.CommandContext(ctx, "sh", "-c", outer)
	cmd.Env = append(os.Environ(), "R="+root, "PVC="+pvc, "CTL="+controller, "SCRIPT="+script,
		fmt.Sprintf("IMAGE_PATH=/usr/lib/postgresql/%d/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", major))
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID}
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%w\n%s", err, out)
	}
	return string(out), nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
