// Package conformance is the test suite every idem.Target must pass. A
// backend's own tests call Run with a Backend that makes fresh, empty
// targets; the suite then checks every strategy, rerun, bad input, hostile
// name, crash and concurrent load the same way for all of them.
package conformance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/source"
)

// Backend makes targets for the suite.
type Backend struct {
	Name string
	// NewURL returns the URL of a fresh, empty target that lives until the
	// test ends.
	NewURL func(t *testing.T) string
	// Open opens a target URL.
	Open func(ctx context.Context, url string) (idem.Target, error)
	// NoQuery, when not empty, says why the target cannot be a --from
	// query source (files and object stores run no SQL): the query-source
	// checks are skipped with that reason, everything else still runs.
	NoQuery string
	// NoTableKey, when not empty, says why the target keeps no primary key
	// of its own between loads (files: --key matters only inside a load),
	// so a keyless load cannot collide with rows of another partition; the
	// check that such a collision is reported at its line is skipped with
	// that reason.
	NoTableKey string
}

// Run runs the whole suite.
func Run(t *testing.T, b Backend) {
	t.Run("Strategies", func(t *testing.T) { testStrategies(t, b) })
	t.Run("DigestHistory", func(t *testing.T) { testDigestHistory(t, b) })
	t.Run("KeylessSwap", func(t *testing.T) { testKeylessSwap(t, b) })
	t.Run("BadInput", func(t *testing.T) { testBadInput(t, b) })
	t.Run("HostileNames", func(t *testing.T) { testHostile(t, b) })
	t.Run("Determinism", func(t *testing.T) { testDeterminism(t, b) })
	t.Run("Types", func(t *testing.T) { testTypes(t, b) })
	t.Run("Evolve", func(t *testing.T) { testEvolve(t, b) })
	t.Run("DryRun", func(t *testing.T) { testDryRun(t, b) })
	t.Run("Process", func(t *testing.T) { testProcess(t, b) })
}

func open(t *testing.T, b Backend) (idem.Target, string) {
	t.Helper()
	url := b.NewURL(t)
	tg, err := b.Open(context.Background(), url)
	if err != nil {
		t.Fatalf("open %s: %v", b.Name, err)
	}
	t.Cleanup(func() { tg.Close() })
	return tg, url
}

// writeFile puts content in a temp file named name and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// LoadCSV writes body to a file called name and loads it with spec, as
// load does: for a backend's own tests of what the suite cannot set up
// across backends (a table the user created with constraints of its own).
func LoadCSV(t *testing.T, tg idem.Target, spec idem.LoadSpec, name, body string) (*idem.Result, error) {
	t.Helper()
	return load(t, tg, spec, writeFile(t, name, body))
}

// load runs idem.Load from files, the way the CLI does (digest included).
func load(t *testing.T, tg idem.Target, spec idem.LoadSpec, files ...string) (*idem.Result, error) {
	t.Helper()
	rr, err := source.Open(files, nil, source.Options{})
	if err != nil {
		return nil, err
	}
	defer rr.Close()
	d, err := source.Digest(files)
	if err != nil {
		t.Fatal(err)
	}
	if spec.InputDigest == "" {
		spec.InputDigest = fmt.Sprintf("%s|%s|%s|%v|%s|%s", d, spec.Table, spec.Strategy, spec.Key, spec.Partition, spec.Dedupe)
	}
	if spec.RunID == "" {
		spec.RunID = fmt.Sprintf("run-%d", time.Now().UnixNano())
	}
	return idem.Load(context.Background(), tg, rr, spec)
}

func mustLoad(t *testing.T, tg idem.Target, spec idem.LoadSpec, files ...string) *idem.Result {
	t.Helper()
	r, err := load(t, tg, spec, files...)
	if err != nil {
		t.Fatalf("load %v: %v", files, err)
	}
	return r
}

// fp is the canonical fingerprint of a table (or partition); a missing
// table is the empty multiset.
func fp(t *testing.T, tg idem.Target, table string, part *idem.Partition) idem.Fingerprint {
	t.Helper()
	f, err := idem.FingerprintOf(context.Background(), tg, table, part)
	if err != nil && !errors.Is(err, idem.ErrNoTable) {
		t.Fatalf("fingerprint %s: %v", table, err)
	}
	return f
}

// rowsOf reads a table as sorted "col=val|…" lines, for readable diffs.
func rowsOf(t *testing.T, tg idem.Target, table string) []string {
	t.Helper()
	var out []string
	err := tg.Scan(context.Background(), table, nil, func(s idem.Schema, r idem.Row) error {
		parts := make([]string, 0, len(s))
		idx := make([]int, len(s))
		for i := range idx {
			idx[i] = i
		}
		sort.Slice(idx, func(a, b int) bool { return s[idx[a]].Name < s[idx[b]].Name })
		for _, i := range idx {
			v := "NULL"
			if !r[i].Null {
				v = fmt.Sprintf("%q", r[i].S)
			}
			parts = append(parts, s[i].Name+"="+v)
		}
		out = append(out, strings.Join(parts, "|"))
		return nil
	})
	if err != nil && !errors.Is(err, idem.ErrNoTable) {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// expectFP is the fingerprint of rows given as CSV text over schema,
// computed without any backend: the end state a strategy must reach.
func expectFP(t *testing.T, schema idem.Schema, csv string) idem.Fingerprint {
	t.Helper()
	p := writeFile(t, "expect.csv", csv)
	rr, err := source.Open([]string{p}, nil, source.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	cols := rr.Columns()
	var sch idem.Schema
	for _, c := range cols {
		j := schema.Index(c)
		if j < 0 {
			t.Fatalf("expected column %q not in schema", c)
		}
		sch = append(sch, schema[j])
	}
	h := idem.NewRowHasher(sch)
	var f idem.Fingerprint
	for {
		rec, _, err := rr.Read()
		if err != nil {
			break
		}
		row := make(idem.Row, len(rec))
		for i, v := range rec {
			if !v.Null {
				c, err := idem.Canon(sch[i].Type, v.S)
				if err != nil {
					t.Fatalf("expected row: %v", err)
				}
				v.S = c
			}
			row[i] = v
		}
		f.Add(h.Hash(row))
	}
	return f
}
