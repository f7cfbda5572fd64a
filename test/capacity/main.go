// Command capacity reproduces docs/scaling.md's capacity table from txmesh's measured figures and the
// documented assumptions. Every input is a flag: change one and rerun.
//
//	go run ./test/capacity                        # the table of docs/scaling.md
//	go run ./test/capacity -db-vcpu 32 -db-scaling 0.5
//	go run ./test/capacity -update docs/scaling.md   # rewrite the table between the capacity markers
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
)

const (
	beginMarker = "<!-- capacity:begin (go run ./test/capacity -update docs/scaling.md) -->\n"
	endMarker   = "<!-- capacity:end -->\n"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "capacity:", err)
		os.Exit(2)
	}
}

func run(args []string, stdout io.Writer) error {
	in := DefaultInputs()
	fs := flag.NewFlagSet("capacity", flag.ContinueOnError)
	for _, i := range in.List() {
		key := i.Key
		fs.Func(key, fmt.Sprintf("%s (%s; default %v)", i.Source, i.Unit, i.Value), func(s string) error {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return err
			}
			if v <= 0 {
				return errors.New("must be positive")
			}
			return in.Set(key, v)
		})
	}
	update := fs.String("update", "", "rewrite the table between the capacity markers of this Markdown file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if in.Get("zones") < 2 || in.Get("db-utilisation") > 1 || in.Get("app-utilisation") > 1 {
		return errors.New("zones must be at least 2 and utilisations at most 1")
	}
	table := Markdown(in, Model(in))
	if *update == "" {
		_, err := io.WriteString(stdout, table)
		return err
	}
	doc, err := os.ReadFile(*update)
	if err != nil {
		return err
	}
	out, err := replaceBlock(doc, table)
	if err != nil {
		return fmt.Errorf("%s: %w", *update, err)
	}
	return os.WriteFile(*update, out, 0o644)
}

// replaceBlock puts table between the markers of doc.
func replaceBlock(doc []byte, table string) ([]byte, error) {
	b := bytes.Index(doc, []byte(beginMarker))
	e := bytes.Index(doc, []byte(endMarker))
	if b < 0 || e < b {
		return nil, errors.New("no capacity markers")
	}
	var out bytes.Buffer
	out.Write(doc[:b+len(beginMarker)])
	out.WriteString(table)
	out.Write(doc[e:])
	return out.Bytes(), nil
}
