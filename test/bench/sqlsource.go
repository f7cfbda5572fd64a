package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
)

// bankSQL reads the Bank's per-transaction statement, the constant processSQL, from the Bank's source
// (src/internal/bank/ledger.go), so that pgbench runs exactly what the Bank runs, whatever it becomes.
func bankSQL(root string) (string, error) { return bankConst(root, "processSQL") }

// bankBatchSQL reads the Bank's batch statement, the constant processBatchSQL, the same way.
func bankBatchSQL(root string) (string, error) { return bankConst(root, "processBatchSQL") }

// bankConst reads the string constant name from src/internal/bank/ledger.go.
func bankConst(root, constName string) (string, error) {
	path := filepath.Join(root, "src", "internal", "bank", "ledger.go")
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		return "", err
	}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if name.Name != constName || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return "", fmt.Errorf("%s: %s is not a string literal", path, constName)
				}
				return strconv.Unquote(lit.Value)
			}
		}
	}
	return "", fmt.Errorf("%s: const %s not found", path, constName)
}
