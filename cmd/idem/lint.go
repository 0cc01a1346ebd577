package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/lint"
	"github.com/spf13/cobra"
)

// findingsFound is lint's exit 3: the code has non-idempotent patterns.
type findingsFound struct{ n int }

func (e *findingsFound) Error() string { return fmt.Sprintf("%d finding(s)", e.n) }
func (e *findingsFound) ExitCode() int { return idem.ExitDiffers }

func lintCmd(e *env) *cobra.Command {
	var format string
	var disable []string
	c := &cobra.Command{
		Use:   "lint [PATH...] [--format text|json|sarif] [--disable RULE,...]",
		Short: "Find non-idempotent patterns in SQL, Python and Go code",
		Long: `lint reads .sql, .py and .go files (directories recursively; the current
directory by default) and reports the patterns that make a job unsafe to run
twice, one per line as path:line:col RULE message. It exits 0 with no
findings, 3 with findings, 2 for a file it cannot read or parse.

Rules:
` + ruleList() + `
SQL inside Python and Go string literals is linted as SQL. An INSERT into a
table the same file deletes from, truncates or creates first is the seed's
delete-then-insert pattern and is not reported.`,
		Example: `  idem lint dags/ sql/
  idem lint --format sarif . > idem.sarif      # for GitHub code scanning
  idem lint --disable now-in-data,auto-increment-key etl.py`,
		RunE: func(cmd *cobra.Command, args []string) error {
			off := map[lint.Rule]bool{}
			for _, r := range disable {
				if !lint.Known(lint.Rule(r)) {
					return idem.BadInput("--disable: unknown rule %q (rules: %s)", r, ruleNames())
				}
				off[lint.Rule(r)] = true
			}
			if format != "text" && format != "json" && format != "sarif" {
				return idem.BadInput("--format %q: want text, json or sarif", format)
			}
			if len(args) == 0 {
				args = []string{"."}
			}
			var all []lint.Finding
			sources := map[string][]byte{} // for SARIF's character columns
			for _, root := range args {
				files, err := lintFiles(root)
				if err != nil {
					return err
				}
				for _, path := range files {
					if err := cmd.Context().Err(); err != nil {
						return err // Ctrl-C between files
					}
					src, err := os.ReadFile(path)
					if err != nil {
						return fmt.Errorf("read %s: %w", path, err)
					}
					fs, err := lint.File(path, src)
					var se *lint.SyntaxError
					if errors.As(err, &se) {
						return &idem.InputError{File: se.Path, Line: int64(se.Line), Col: se.Col, Msg: se.Msg}
					}
					if err != nil {
						return err
					}
					for _, f := range fs {
						if !off[f.Rule] {
							all = append(all, f)
						}
					}
					if format == "sarif" && len(fs) > 0 {
						sources[path] = src
					}
				}
			}
			switch format {
			case "json":
				enc := json.NewEncoder(e.stdout)
				for _, f := range all {
					_ = enc.Encode(f)
				}
			case "sarif":
				if err := writeSARIF(e.stdout, all, off, sources); err != nil {
					return err
				}
			default:
				for _, f := range all {
					fmt.Fprintln(e.stdout, f)
				}
			}
			if len(all) > 0 {
				return &findingsFound{len(all)}
			}
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "text", "output: text, json (one object per finding) or sarif (SARIF 2.1.0)")
	c.Flags().StringSliceVar(&disable, "disable", nil, "rules to leave out, comma-separated")
	return c
}

// lintFiles lists the files lint reads under root: root itself when it is
// a file (whatever its extension), else the supported files below it,
// skipping hidden, vendor and dependency directories.
func lintFiles(root string) ([]string, error) {
	info, err := os.Stat(root)
	if err != nil {
		return nil, idem.BadInput("%s: %v", root, errors.Unwrap(err))
	}
	if !info.IsDir() {
		if !lint.Supported(root) {
			return nil, idem.BadInput("%s: lint reads .sql, .py and .go files", root)
		}
		return []string{root}, nil
	}
	var out []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "vendor" || name == "node_modules" || name == "__pycache__" || name == "testdata" || name == "venv") {
				return filepath.SkipDir
			}
			return nil
		}
		if lint.Supported(path) {
			out = append(out, path)
		}
		return nil
	})
	return out, err
}

func ruleNames() string {
	var s []string
	for _, r := range lint.Rules {
		s = append(s, string(r.Rule))
	}
	return strings.Join(s, ", ")
}

func ruleList() string {
	var b strings.Builder
	for _, r := range lint.Rules {
		fmt.Fprintf(&b, "  %-22s %s\n", r.Rule, r.Help)
	}
	return b.String()
}
