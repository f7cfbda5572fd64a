// Package pglocal starts throwaway PostgreSQL servers from the server binaries installed on the machine: for
// tests, `make run`, benchmarks and the HA lab (a primary with streaming standbys, kill -9 and promotion).
//
// Every server binary runs through src/localenv/proc: in its own process group, killed when the caller dies;
// a server's default directory is a proc.TempDir, removed by the next caller when this one crashed.
//
// initdb and postgres refuse to run as root: when the caller is root the servers run as the unprivileged
// `postgres` user (override with PGLOCAL_USER).
package pglocal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txmesh/txmesh/src/localenv/proc"
)

// Options configure a new server.
type Options struct {
	// Dir is where the data directory and log go; a fresh proc.TempDir when empty.
	Dir string
	// Port to listen on (127.0.0.1); a free one when 0.
	Port int
	// Settings are passed as `-c name=value` and override the defaults (fsync=off among them: a killed
	// server keeps its data in the OS page cache, so kill -9 tests stay honest while running fast).
	Settings map[string]string
	// Upstream is, for Standby, the host:port the standby streams from (and takes its base backup through):
	// a proxy in front of the primary, so that tests can cut or slow replication. The primary's own address
	// when empty.
	Upstream string
}

// Server is one running (or stopped) PostgreSQL server.
type Server struct {
	bin      string
	dir      string
	dataDir  string
	port     int
	settings map[string]string
	cred     *syscall.Credential

	pm atomic.Pointer[proc.Process] // the postmaster; nil before the first start
}

// Superuser is the role initdb creates; authentication is trust on loopback.
const Superuser = "postgres"

var defaultSettings = map[string]string{
	"listen_addresses":        "127.0.0.1",
	"unix_socket_directories": "",
	"fsync":                   "off",
	"full_page_writes":        "off",
	"max_connections":         "300",
	"max_wal_senders":         "10",
	"wal_level":               "replica",
	"wal_keep_size":           "256MB",
	"logging_collector":       "off",
	"log_min_messages":        "warning",
	"shared_buffers":          "64MB",
}

// BinDir finds the directory holding initdb, pg_ctl, postgres, pg_basebackup (Standby) and pg_rewind
// (Rewind): $PG_BIN, then the PATH, then the usual Debian/Ubuntu and Homebrew locations (newest version first).
func BinDir() (string, error) {
	if d := os.Getenv("PG_BIN"); d != "" {
		return d, checkBin(d)
	}
	var candidates []string
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			candidates = append(candidates, filepath.Dir(r))
		}
	}
	for _, pattern := range []string{"/usr/lib/postgresql/*/bin", "/opt/homebrew/opt/postgresql@*/bin",
		"/usr/local/opt/postgresql@*/bin", "/usr/pgsql-*/bin"} {
		m, _ := filepath.Glob(pattern)
		sort.Slice(m, func(i, j int) bool { return versionOf(m[i]) > versionOf(m[j]) })
		candidates = append(candidates, m...)
	}
	for _, d := range candidates {
		if checkBin(d) == nil {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries (initdb, pg_ctl, postgres, pg_basebackup, pg_rewind) " +
		"not found: install them (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql@16) " +
		"or set PG_BIN")
}

func versionOf(dir string) int {
	for _, part := range strings.Split(dir, string(filepath.Separator)) {
		part = strings.TrimPrefix(strings.TrimPrefix(part, "postgresql@"), "pgsql-")
		if n, err := strconv.Atoi(part); err == nil {
			return n
		}
	}
	return 0
}

func checkBin(dir string) error {
	for _, b := range []string{"initdb", "pg_ctl", "postgres", "pg_basebackup", "pg_rewind"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(dir, b), err)
		}
	}
	return nil
}

// credential returns who the server processes run as: nil (the caller) unless the caller is root.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	name := os.Getenv("PGLOCAL_USER")
	if name == "" {
		name = "postgres"
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL needs an unprivileged user %q (useradd -r %s): %w",
			name, name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// FreePort asks the kernel for a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func newServer(opts Options) (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	dir := opts.Dir
	if dir == "" {
		if dir, err = proc.TempDir("pglocal-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	port := opts.Port
	if port == 0 {
		if port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	settings := make(map[string]string, len(defaultSettings)+len(opts.Settings))
	for k, v := range defaultSettings {
		settings[k] = v
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	return &Server{bin: bin, dir: dir, dataDir: filepath.Join(dir, "data"), port: port, settings: settings,
		cred: cred}, nil
}

// Start initialises a new data directory and starts a server on it.
func Start(ctx context.Context, opts Options) (*Server, error) {
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	if err := s.run(ctx, "initdb", "-D", s.dataDir, "-U", Superuser, "--auth=trust", "--encoding=UTF8",
		"--locale=C", "--no-instructions"); err != nil {
		return nil, err
	}
	return s, s.Restart(ctx)
}

// run executes one of the server binaries to completion as the server's user.
func (s *Server) run(ctx context.Context, name string, args ...string) error {
	_, err := proc.Run(ctx, proc.Spec{Name: name, Path: filepath.Join(s.bin, name), Args: args, Dir: s.dir,
		Cred: s.cred})
	return err
}

// settingArgs is the settings as `-c name=value` arguments, in a stable order.
func (s *Server) settingArgs() []string {
	keys := make([]string, 0, len(s.settings))
	for k := range s.settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		args = append(args, "-c", k+"="+s.settings[k])
	}
	return args
}

// Restart starts the server process on its existing data directory and waits until it accepts connections
// (for a standby: connections in recovery).
func (s *Server) Restart(ctx context.Context) error {
	if s.Running() {
		return errors.New("server already running")
	}
	// A new Process each time: the settings (the command line) may have changed since the last start.
	pm := proc.New(proc.Spec{Name: "postgres", Path: filepath.Join(s.bin, "postgres"), Dir: s.dir,
		Args: append([]string{"-D", s.dataDir, "-p", strconv.Itoa(s.port)}, s.settingArgs()...),
		Log:  s.LogFile(), Cred: s.cred, StopSignal: syscall.SIGINT}) // SIGINT: fast shutdown
	if err := pm.Start(); err != nil {
		return err
	}
	s.pm.Store(pm)
	return pm.WaitReady(ctx, 60*time.Second, func(ctx context.Context) error {
		c, err := pgx.Connect(ctx, s.DSN("postgres")+"&connect_timeout=2")
		if err == nil {
			_ = c.Close(ctx)
		}
		return err
	})
}

// Port is the TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Dir holds the data directory and the log.
func (s *Server) Dir() string { return s.dir }

// LogFile is the server's log.
func (s *Server) LogFile() string { return filepath.Join(s.dir, "postgres.log") }

// DSN is a libpq URL for database db as the superuser.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", Superuser, s.Addr(), db)
}

// PID is the postmaster's process id (of its last run once it exited; 0 before the first start).
func (s *Server) PID() int {
	if pm := s.pm.Load(); pm != nil {
		return pm.PID()
	}
	return 0
}

// Running reports whether the server process is alive.
func (s *Server) Running() bool {
	pm := s.pm.Load()
	return pm != nil && pm.Running()
}

// Exec runs one SQL statement as the superuser in database db.
func (s *Server) Exec(ctx context.Context, db, sql string) error {
	c, err := pgx.Connect(ctx, s.DSN(db))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, sql)
	return err
}

// CreateDatabase creates an empty database.
func (s *Server) CreateDatabase(ctx context.Context, name string) error {
	return s.Exec(ctx, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
}

// Stop shuts the server down cleanly (fast shutdown) and waits for it; after 30 s it kills it.
func (s *Server) Stop() error {
	if !s.Running() {
		return errors.New("server not running")
	}
	_ = s.Resume() // a paused server would never finish shutting down
	if err := s.pm.Load().Stop(30 * time.Second); errors.Is(err, proc.ErrKilled) {
		killBackends(s.dataDir)
	}
	return nil
}

// Kill sends SIGKILL to the postmaster and waits for it: a crash, not a shutdown. The postmaster's children
// notice it is gone and exit; the data directory needs crash recovery at the next start.
func (s *Server) Kill() error {
	if pm := s.pm.Load(); pm == nil || !pm.Kill() {
		return errors.New("server not running")
	}
	killBackends(s.dataDir)
	return nil
}

// Pause freezes every process of the server (SIGSTOP): connections stay open and nothing answers, as on a
// machine that stalls; a synchronous standby that is paused holds every commit waiting for it. Resume
// undoes it.
func (s *Server) Pause() error { return s.signalAll(syscall.SIGSTOP) }

// Resume ends Pause.
func (s *Server) Resume() error { return s.signalAll(syscall.SIGCONT) }

// signalAll signals the postmaster and its backends (see killBackends); the postmaster stops first, so that
// it forks no backend the scan would miss.
func (s *Server) signalAll(sig syscall.Signal) error {
	pm := s.pm.Load()
	if pm == nil || !pm.Running() {
		return errors.New("server not running")
	}
	if sig == syscall.SIGSTOP {
		if err := pm.Pause(); err != nil {
			return err
		}
	}
	for _, pid := range serverProcesses(s.dataDir) {
		_ = syscall.Kill(pid, sig)
	}
	if sig == syscall.SIGCONT {
		return pm.Resume()
	}
	return nil
}

// Close stops the server if it runs and removes its directory.
func (s *Server) Close() error {
	if s.Running() {
		if err := s.Stop(); err != nil {
			_ = s.Kill()
		}
	}
	return os.RemoveAll(s.dir)
}

// Standby creates a streaming-replication standby of s from a base backup (pg_basebackup -R) and starts it.
// name is its application_name, the name `synchronous_standby_names` refers to.
func (s *Server) Standby(ctx context.Context, name string, opts Options) (*Server, error) {
	st, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	host, port, err := upstreamOf(s, opts.Upstream)
	if err != nil {
		return nil, err
	}
	if err := st.run(ctx, "pg_basebackup", "-D", st.dataDir, "-h", host, "-p", port,
		"-U", Superuser, "-X", "stream", "-R", "-c", "fast", "-d",
		fmt.Sprintf("application_name=%s host=%s port=%s user=%s", name, host, port, Superuser)); err != nil {
		return nil, err
	}
	return st, st.Restart(ctx)
}

func upstreamOf(primary *Server, upstream string) (host, port string, err error) {
	if upstream == "" {
		return "127.0.0.1", strconv.Itoa(primary.port), nil
	}
	host, port, err = net.SplitHostPort(upstream)
	if err != nil {
		return "", "", fmt.Errorf("upstream %q: %w", upstream, err)
	}
	return host, port, nil
}

// Rewind re-joins s, a stopped (or killed) former primary, as a streaming standby of source, the primary that
// replaced it: pg_rewind rolls back whatever s wrote that source never received (crash recovery first when s
// was killed), then standby.signal and a primary_conninfo with application_name name, streaming from
// upstream (source's own address when empty). Restart s afterwards. pg_rewind needs wal_log_hints=on (or
// data checksums) on s and full_page_writes=on on source.
func (s *Server) Rewind(ctx context.Context, source *Server, name, upstream string) error {
	if s.Running() {
		return errors.New("rewind: server still running")
	}
	// A just-promoted server records its new timeline in the control file, which pg_rewind reads, only at its
	// next checkpoint.
	if err := source.Exec(ctx, "postgres", "CHECKPOINT"); err != nil {
		return fmt.Errorf("checkpoint on the rewind source: %w", err)
	}
	// pg_rewind wants a cleanly shut down target. It would run crash recovery by itself, but without our
	// command-line settings, and the control file would then record wal_log_hints=off: do it here with them.
	single := append([]string{"--single", "-F", "-D", s.dataDir}, s.settingArgs()...)
	if err := s.run(ctx, "postgres", append(single, "template1")...); err != nil {
		return fmt.Errorf("crash recovery before rewind: %w", err)
	}
	if err := s.run(ctx, "pg_rewind", "-D", s.dataDir, "--source-server",
		fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=postgres", source.port, Superuser)); err != nil {
		return err
	}
	host, port, err := upstreamOf(source, upstream)
	if err != nil {
		return err
	}
	signal := filepath.Join(s.dataDir, "standby.signal")
	if err := os.WriteFile(signal, nil, 0o600); err != nil {
		return err
	}
	if err := s.Chown(signal); err != nil {
		return err
	}
	s.SetSetting("primary_conninfo",
		fmt.Sprintf("application_name=%s host=%s port=%s user=%s", name, host, port, Superuser))
	return nil
}

// Promote turns a standby into a primary and waits until it accepts writes.
func (s *Server) Promote(ctx context.Context) error {
	if err := s.run(ctx, "pg_ctl", "promote", "-w", "-D", s.dataDir); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		c, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err == nil {
			var inRecovery bool
			err = c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery)
			_ = c.Close(ctx)
			if err == nil && !inRecovery {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("standby did not leave recovery: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// SetSetting changes a setting for the next Restart (e.g. primary_conninfo for a re-pointed standby).
func (s *Server) SetSetting(name, value string) { s.settings[name] = value }

// Chown gives path (a file the caller wrote) to the server's user, so the server can read it.
func (s *Server) Chown(path string) error {
	if s.cred == nil {
		return nil
	}
	return os.Chown(path, int(s.cred.Uid), int(s.cred.Gid))
}

var _ io.Closer = (*Server)(nil)

// IsolateFromStandby makes the server a primary whose synchronous standby is gone, as one cut off from its
// standbys is: synchronous_standby_names names a standby that never connects, so every commit that writes
// WAL waits (a cancelled wait leaves the commit visible, "committed locally"). It returns once a probe
// commit blocks; ReconnectStandby undoes it.
func (s *Server) IsolateFromStandby(ctx context.Context) error {
	for _, q := range []string{
		"CREATE TABLE IF NOT EXISTS pglocal_sync_probe (i int)",
		"ALTER SYSTEM SET synchronous_standby_names = 'pglocal_absent_standby'",
		"SELECT pg_reload_conf()",
	} {
		if err := s.Exec(ctx, "postgres", q); err != nil {
			return err
		}
	}
	// Backends see the new names at once, but commits start waiting only once the checkpointer has taken
	// the reload: wait until a probe commit blocks (it must write WAL: a commit without any does not wait).
	deadline := time.Now().Add(10 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		began := time.Now()
		err := s.Exec(pctx, "postgres", "INSERT INTO pglocal_sync_probe VALUES (1)")
		cancel()
		if time.Since(began) >= 250*time.Millisecond { // a cancelled wait may still report success
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("commits still do not wait for the absent standby 10s after the reload: %w", err)
			}
			return errors.New("commits still do not wait for the absent standby 10s after the reload")
		}
	}
}

// ReconnectStandby ends IsolateFromStandby: commits no longer wait, and those waiting complete.
func (s *Server) ReconnectStandby(ctx context.Context) error {
	for _, q := range []string{"ALTER SYSTEM RESET synchronous_standby_names", "SELECT pg_reload_conf()"} {
		if err := s.Exec(ctx, "postgres", q); err != nil {
			return err
		}
	}
	return nil
}
