package host

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// InNetns is argv run in the network namespace ns (under /run/netns).
func InNetns(ns string, argv ...string) []string {
	return append([]string{"nsenter", "--net=/run/netns/" + ns, "--"}, argv...)
}

// CmdTimeout bounds the short commands of the network setup and teardown.
const CmdTimeout = 20 * time.Second

// IP runs ip(8).
func IP(args ...string) error {
	_, err := Run(CmdTimeout, append([]string{"ip"}, args...)...)
	return err
}

// IPIn runs ip(8) in the network namespace ns.
func IPIn(ns string, args ...string) error {
	return IP(append([]string{"-n", ns}, args...)...)
}

// NetnsSysctl writes a per-namespace sysctl from inside the namespace (/proc/sys/net shows the writer's own).
func NetnsSysctl(ns, key, value string) error {
	_, err := Run(CmdTimeout, InNetns(ns, "/bin/sh", "-c",
		fmt.Sprintf("echo %s > /proc/sys/%s", value, key))...)
	return err
}

// LinkExists reports whether the network device exists.
func LinkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

// FreePorts returns n free TCP ports on the loopback address.
func FreePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// WaitTCP waits until addr accepts a connection; tail adds to the error (a daemon's last log lines).
func WaitTCP(ctx context.Context, addr string, d time.Duration, tail func() string) error {
	deadline := time.Now().Add(d)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening after %s: %w%s", addr, d, err, tail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// WaitUnix waits until the socket at path accepts a connection, as WaitTCP.
func WaitUnix(ctx context.Context, path string, d time.Duration, tail func() string) error {
	deadline := time.Now().Add(d)
	for {
		conn, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering after %s: %w%s", path, d, err, tail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
