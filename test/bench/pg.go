package main

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
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// The bench lives outside src/, so Go's internal-package rule keeps src/internal/pglocal out of reach: this is
// the small part of it the bench needs (initdb, postgres, pg_basebackup), black-box like the rest of the bench.

const superuser = "postgres"

// pgBinDir finds the PostgreSQL server binaries: $PG_BIN, the PATH, then the Debian/Ubuntu layout.
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
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(m, func(i, j int) bool {
		a, _ := strconv.Atoi(filepath.Base(filepath.Dir(m[i])))
		b, _ := strconv.Atoi(filepath.Base(filepath.Dir(m[j])))
		return a > b
	})
	candidates = append(candidates, m...)
	for _, d := range candidates {
		ok := true
		for _, b := range []string{"initdb", "postgres", "pg_basebackup", "pgbench"} {
			if _, err := os.Stat(filepath.Join(d, b)); err != nil {
				ok = false
			}
		}
		if ok {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries with pgbench not found (set PG_BIN)")
}

// pgCredential: initdb and postgres refuse to run as root; then they run as the `postgres` user.
func pgCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL needs the unprivileged user postgres: %w", err)
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

// pgServer is one running PostgreSQL server.
type pgServer struct {
	bin, dir, data string
	port           int
	cred           *syscall.Credential
	cmd            *exec.Cmd
	done           chan struct{}
}

func newPgServer(parent string, settings map[string]string) (*pgServer, error) {
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := pgCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(parent, "pg-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	return &pgServer{bin: bin, dir: dir, data: filepath.Join(dir, "data"), port: port, cred: cred}, nil
}

func (s *pgServer) tool(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// startPrimary initialises a data directory and starts a server on it.
func startPrimary(ctx context.Context, parent string, settings map[string]string) (*pgServer, error) {
	s, err := newPgServer(parent, settings)
	if err != nil {
		return nil, err
	}
	if err := s.tool(ctx, "initdb", "-D", s.data, "-U", superuser, "--auth=trust", "--encoding=UTF8",
		"--locale=C", "--no-instructions"); err != nil {
		return nil, err
	}
	return s, s.start(ctx, settings)
}

// startStandby makes a streaming standby of p (application_name = name) and starts it.
func startStandby(ctx context.Context, p *pgServer, parent, name string, settings map[string]string) (*pgServer,
	error) {
	s, err := newPgServer(parent, settings)
	if err != nil {
		return nil, err
	}
	if err := s.tool(ctx, "pg_basebackup", "-D", s.data, "-h", "127.0.0.1", "-p", strconv.Itoa(p.port),
		"-U", superuser, "-X", "stream", "-R", "-c", "fast", "-d",
		fmt.Sprintf("application_name=%s host=127.0.0.1 port=%d user=%s", name, p.port, superuser)); err != nil {
		return nil, err
	}
	return s, s.start(ctx, settings)
}

var baseSettings = map[string]string{
	"listen_addresses":        "127.0.0.1",
	"unix_socket_directories": "",
	"max_connections":         "300",
	"max_wal_senders":         "10",
	"wal_level":               "replica",
	"logging_collector":       "off",
	"log_min_messages":        "warning",
}

func (s *pgServer) start(ctx context.Context, settings map[string]string) error {
	all := map[string]string{}
	for k, v := range baseSettings {
		all[k] = v
	}
	for k, v := range settings {
		all[k] = v
	}
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := []string{"-D", s.data, "-p", strconv.Itoa(s.port)}
	for _, k := range keys {
		args = append(args, "-c", k+"="+all[k])
	}
	logf, err := os.Create(filepath.Join(s.dir, "postgres.log"))
	if err != nil {
		return err
	}
	if s.cred != nil {
		_ = logf.Chown(int(s.cred.Uid), int(s.cred.Gid))
	}
	s.cmd = exec.Command(filepath.Join(s.bin, "postgres"), args...)
	s.cmd.Dir = s.dir
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	s.done = make(chan struct{})
	go func() { _ = s.cmd.Wait(); logf.Close(); close(s.done) }()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		c, err := pgx.Connect(ctx, s.dsn("postgres")+"&connect_timeout=2")
		if err == nil {
			_ = c.Close(ctx)
			return nil
		}
		select {
		case <-s.done:
			b, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
			return fmt.Errorf("postgres exited during start-up: %s", tail(b))
		case <-ctx.Done():
			return fmt.Errorf("postgres not ready: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *pgServer) pid() int { return s.cmd.Process.Pid }

func (s *pgServer) dsn(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", superuser, s.port, db)
}

func (s *pgServer) exec(ctx context.Context, db string, sql ...string) error {
	c, err := pgx.Connect(ctx, s.dsn(db))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	for _, q := range sql {
		if _, err := c.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", strings.Fields(q)[0], err)
		}
	}
	return nil
}

// close stops the server (fast shutdown) and removes its directory.
func (s *pgServer) close() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	_ = os.RemoveAll(s.dir)
}
