package kube

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/txmesh/txmesh/test/cluster/host"
)

// A harness service that production keeps outside the cluster's failure domain (the object store of the
// backups) runs on the host beside the control plane as one of the cluster's daemons, as the registry does:
// in the cluster's cgroup, its log with the others, its data under Layout.Dir, so Down removes it, even
// after a crash. It listens on the host's bridge address, which pods and nodes reach; no node's fault takes
// it away.

// DaemonDir is the directory for the data of daemon name, made if missing.
func (c *Cluster) DaemonDir(name string) (string, error) {
	d := filepath.Join(c.layout.Dir, "daemons", name)
	return d, os.MkdirAll(d, 0o700)
}

// DaemonAddr is where daemon name listens when started on port: the host's bridge address.
func (c *Cluster) DaemonAddr(port int) string {
	return net.JoinHostPort(c.layout.HostIP(), strconv.Itoa(port))
}

// StartDaemon starts argv as daemon name with env and waits until it accepts connections at DaemonAddr(port)
// (argv must make it listen there). A daemon already running under that name is kept as it is.
func (c *Cluster) StartDaemon(ctx context.Context, name string, port int, env []string, argv ...string) error {
	if p, ok := c.proc(name); ok && p.Alive() {
		return nil
	}
	if err := c.spawn(name, "", c.layout.Name+"/"+name, env, argv...); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	if err := host.WaitTCP(ctx, c.DaemonAddr(port), 30*time.Second, c.tail(name)); err != nil {
		return fmt.Errorf("%s did not start: %w", name, err)
	}
	return nil
}

// StopDaemon kills daemon name and everything it started, as a crash of its host would; its data stays, and
// StartDaemon starts it again. Stopping a daemon that is not running is a no-op.
func (c *Cluster) StopDaemon(name string) error {
	if _, ok := c.proc(name); !ok {
		return fmt.Errorf("no daemon %s in this cluster", name)
	}
	return host.KillCgroup(c.layout.Name+"/"+name, 30*time.Second)
}
