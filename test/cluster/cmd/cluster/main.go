// Command cluster starts and stops the throwaway Kubernetes of `make cluster-up` / `make cluster-down`.
//
//	cluster up   [-repo DIR] [-nodes 3] [-tag e2e]   build what is missing, start the cluster (or reuse the
//	                                                 running one), deploy txmesh, wait until healthy; the last
//	                                                 line printed is KUBECONFIG=<path>
//	cluster down                                     remove everything the cluster made (safe to repeat)
//	cluster build                                    only build (or find cached) the binaries and images,
//	                                                 and every CD component (helm-controller included)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/txmesh/txmesh/test/cluster/cnpg"
	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/kube"
	"github.com/txmesh/txmesh/test/cluster/stack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		stop()
		os.Exit(1)
	}
}

var errUsage = errors.New("usage: cluster up [-repo DIR] [-nodes N] [-tag TAG] | cluster down | cluster build")

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	fs := flag.NewFlagSet("cluster "+args[0], flag.ContinueOnError)
	fs.SetOutput(stdout)
	repo := fs.String("repo", "../..", "the txmesh checkout to deploy")
	nodes := fs.Int("nodes", 3, "number of nodes")
	tag := fs.String("tag", "e2e", "tag of the txmesh image built from the checkout")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	root, err := filepath.Abs(*repo)
	if err != nil {
		return err
	}
	switch args[0] {
	case "down":
		return kube.Down(kube.DefaultLayout(), stdout)
	case "build":
		start := time.Now()
		s, err := stack.Build(ctx, stack.Options{RepoRoot: root, Tag: *tag, Log: stdout})
		if err != nil {
			return err
		}
		// Every CD component too, helm-controller included (the e2e builds the others as it deploys them).
		for _, c := range stack.CDComponents() {
			if _, err := gobuild.Ensure(ctx, s, c, stdout); err != nil {
				return err
			}
		}
		fmt.Fprintf(stdout, "build: everything cached in %s (%s)\n", s, time.Since(start).Round(time.Second))
		return nil
	case "up":
		start := time.Now()
		s, err := stack.Up(ctx, stack.Options{RepoRoot: root, Nodes: *nodes, Tag: *tag, Log: stdout})
		if err != nil {
			return err
		}
		var parts []string
		for k, v := range s.Timing {
			parts = append(parts, fmt.Sprintf("%s %s", k, v.Round(100*time.Millisecond)))
		}
		sort.Strings(parts)
		fmt.Fprintf(stdout, "cluster up in %s (%v); Kubernetes %s, CloudNativePG %s\n",
			time.Since(start).Round(time.Second), parts, kube.Version, cnpg.Version)
		fmt.Fprintf(stdout, "KUBECONFIG=%s\n", s.Cluster.Kubeconfig())
		return nil
	default:
		return errUsage
	}
}
