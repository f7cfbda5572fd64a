package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// The lab lives outside src/, so Go's internal-package rule keeps src/internal/pglocal out of reach: pgServer
// is the part of it the lab needs (initdb, postgres, pg_basebackup, promote, pg_rewind), kept in step with
// pglocal (whose TestFailoverAndRewind covers the same sequence).

const superuser = "postgres"

// pgServer is one throwaway PostgreSQL server on 127.0.0.1, its data directory under dir.
type pgServer struct {
	bin, dir, dataDir string
	port              int
	settings          map[string]string
	cred              *syscall.Credential

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

var baseSettings = map[string]string{
	"listen_addresses":        "127.0.0.1",
	"unix_socket_directories": "",
	"logging_collector":       "off",
	"log_min_messages":        "warning",
	"max_wal_senders":         "10",
	"wal_level":               "replica",
	"wal_keep_size":           "512MB",
	"shared_buffers":          "64MB",
	"max_connections":         "200",
}

// pgBinDir finds initdb, pg_ctl, postgres, pg_basebackup and pg_rewind: $PG_BIN, the PATH, then the usual
// Debian/Ubuntu, Homebrew and PGDG locations (newest first).
func pgBinDir() (string, error) {
	var candidates []string
	if d := os.Getenv("PG_BIN"); d != "" {
		candidates = append(candidates, d)
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			candidates = append(candidates, filepath.Dir(r))
		}
	}
	for _, pattern := range []string{"/usr/lib/postgresql/*/bin", "/opt/homebrew/opt/postgresql@*/bin",
		"/usr/local/opt/postgresql@*/bin", "/usr/pgsql-*/bin"} {
		m, _ := filepath.Glob(pattern)
		sort.Slice(m, func(i, j int) bool { return pgVersionOf(m[i]) > pgVersionOf(m[j]) })
		candidates = append(candidates, m...)
	}
next:
	for _, d := range candidates {
		for _, b := range []string{"initdb", "pg_ctl", "postgres", "pg_basebackup", "pg_rewind"} {
			if _, err := os.Stat(filepath.Join(d, b)); err != nil {
				continue next
			}
		}
		return d, nil
	}
	return "", errors.New("PostgreSQL server binaries (initdb, pg_ctl, postgres, pg_basebackup, pg_rewind) not " +
		"found: install them (Debian/Ubuntu: apt-get install postgresql) or set PG_BIN")
}

func pgVersionOf(dir string) int {
	for _, part := range strings.Split(dir, string(filepath.Separator)) {
		part = strings.TrimPrefix(strings.TrimPrefix(part, "postgresql@"), "pgsql-")
		if n, err := strconv.Atoi(part); err == nil {
			return n
		}
	}
	return 0
}

// pgCredential: initdb and postgres refuse to run as root; then they run as `postgres` (or $PGLOCAL_USER).
func pgCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	name := os.Getenv("PGLOCAL_USER")
	if name == "" {
		name = "postgres"
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL needs an unprivileged user %q: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func newPG(dir string, settings map[string]string) (*pgServer, error) {
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := pgCredential()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &pgServer{bin: bin, dir: dir, dataDir: filepath.Join(dir, "data"), cred: cred,
		settings: map[string]string{}}
	if err := s.chown(dir); err != nil {
		return nil, err
	}
	if s.port, err = freePort(); err != nil {
		return nil, err
	}
	for k, v := range baseSettings {
		s.settings[k] = v
	}
	for k, v := range settings {
		s.settings[k] = v
	}
	return s, nil
}

// startPG initialises a data directory under dir and starts a server on it.
func startPG(ctx context.Context, dir string, settings map[string]string) (*pgServer, error) {
	s, err := newPG(dir, settings)
	if err != nil {
		return nil, err
	}
	if err := s.run(ctx, "initdb", "-D", s.dataDir, "-U", superuser, "--auth=trust", "--encoding=UTF8",
		"--locale=C", "--no-instructions"); err != nil {
		return nil, err
	}
	return s, s.start(ctx)
}

func (s *pgServer) chown(path string) error {
	if s.cred == nil {
		return nil
	}
	return os.Chown(path, int(s.cred.Uid), int(s.cred.Gid))
}

func (s *pgServer) run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, lastLines(string(out), 6))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (s *pgServer) settingArgs() []string {
	keys := make([]string, 0, len(s.settings))
	for k := range s.settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var args []string
	for _, k := range keys {
		args = append(args, "-c", k+"="+s.settings[k])
	}
	return args
}

// start runs the postmaster on the existing data directory and waits until it accepts connections.
func (s *pgServer) start(ctx context.Context) error {
	s.mu.Lock()
	if s.cmd != nil {
		s.mu.Unlock()
		return errors.New("server already running")
	}
	logf, err := os.OpenFile(s.logFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	cmd := exec.Command(filepath.Join(s.bin, "postgres"),
		append([]string{"-D", s.dataDir, "-p", strconv.Itoa(s.port)}, s.settingArgs()...)...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.mu.Unlock()
		return fmt.Errorf("start postgres: %w", err)
	}
	done := make(chan struct{})
	s.cmd, s.done = cmd, done
	go func() {
		_ = cmd.Wait()
		logf.Close()
		s.mu.Lock()
		if s.cmd == cmd {
			s.cmd = nil
		}
		s.mu.Unlock()
		close(done)
	}()
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		c, err := pgx.Connect(ctx, s.dsn("postgres")+"&connect_timeout=2")
		if err == nil {
			_ = c.Close(ctx)
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("postgres exited during start-up: %s", s.tailLog())
		case <-ctx.Done():
			return fmt.Errorf("postgres not ready: %w: %s", err, s.tailLog())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *pgServer) tailLog() string {
	b, _ := os.ReadFile(s.logFile())
	return lastLines(string(b), 10)
}

func (s *pgServer) addr() string    { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }
func (s *pgServer) logFile() string { return filepath.Join(s.dir, "postgres.log") }
func (s *pgServer) dsn(db string) string {
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", superuser, s.addr(), db)
}

func (s *pgServer) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

func (s *pgServer) exec(ctx context.Context, db, sql string) error {
	c, err := pgx.Connect(ctx, s.dsn(db))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, sql)
	return err
}

func (s *pgServer) signal(sig os.Signal) (<-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil, errors.New("server not running")
	}
	return s.done, s.cmd.Process.Signal(sig)
}

// kill is kill -9 of the postmaster, then of the backends it leaves behind (found by their working
// directory, the data directory), so that a new postmaster on the same data never meets them.
func (s *pgServer) kill() error {
	done, err := s.signal(syscall.SIGKILL)
	if err != nil {
		return err
	}
	<-done
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd")); err == nil && cwd == s.dataDir {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return nil
}

// stop is a fast shutdown.
func (s *pgServer) stop() {
	done, err := s.signal(syscall.SIGINT)
	if err != nil {
		return
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = s.kill()
	}
}

// standby takes a base backup of s through upstream (host:port, a proxy in front of s) and starts it as a
// streaming standby whose application_name is name.
func (s *pgServer) standby(ctx context.Context, dir, name, upstream string) (*pgServer, error) {
	st, err := newPG(dir, s.settings)
	if err != nil {
		return nil, err
	}
	delete(st.settings, "primary_conninfo") // pg_basebackup -R writes the one for st
	host, port, err := net.SplitHostPort(upstream)
	if err != nil {
		return nil, err
	}
	if err := st.run(ctx, "pg_basebackup", "-D", st.dataDir, "-h", host, "-p", port, "-U", superuser,
		"-X", "stream", "-R", "-c", "fast", "-d",
		fmt.Sprintf("application_name=%s host=%s port=%s user=%s", name, host, port, superuser)); err != nil {
		return nil, err
	}
	return st, st.start(ctx)
}

// promote ends recovery and waits until the server accepts writes.
func (s *pgServer) promote(ctx context.Context) error {
	if err := s.run(ctx, "pg_ctl", "promote", "-w", "-t", "30", "-D", s.dataDir); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if c, err := pgx.Connect(ctx, s.dsn("postgres")); err == nil {
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

// rewind re-joins s, a killed former primary, as a standby of source streaming through upstream: crash
// recovery with our settings (pg_rewind's own would record wal_log_hints=off), a checkpoint on source (a
// just-promoted server writes its new timeline to the control file pg_rewind reads only then), pg_rewind,
// standby.signal and primary_conninfo. Start s afterwards.
func (s *pgServer) rewind(ctx context.Context, source *pgServer, name, upstream string) error {
	if s.running() {
		return errors.New("rewind: server still running")
	}
	single := append([]string{"--single", "-F", "-D", s.dataDir}, s.settingArgs()...)
	if err := s.run(ctx, "postgres", append(single, "template1")...); err != nil {
		return fmt.Errorf("crash recovery: %w", err)
	}
	if err := source.exec(ctx, "postgres", "CHECKPOINT"); err != nil {
		return fmt.Errorf("checkpoint on %s: %w", source.addr(), err)
	}
	if err := s.run(ctx, "pg_rewind", "-D", s.dataDir, "--source-server",
		fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=postgres", source.port, superuser)); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(upstream)
	if err != nil {
		return err
	}
	signal := filepath.Join(s.dataDir, "standby.signal")
	if err := os.WriteFile(signal, nil, 0o600); err != nil {
		return err
	}
	if err := s.chown(signal); err != nil {
		return err
	}
	s.settings["primary_conninfo"] = fmt.Sprintf("application_name=%s host=%s port=%s user=%s", name, host,
		port, superuser)
	return nil
}

// close stops the server (the run removes the directories, unless kept).
func (s *pgServer) close() {
	if s.running() {
		s.stop()
	}
}
