package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestChecksumReadOnlyCreatesNothing: the commands that only read refuse a
// target that does not exist (a typo) as bad input, without creating the
// SQLite file or the directory.
func TestChecksumReadOnlyCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.csv", "id,v\n1,x\n")
	if code, _, errs := runIn(t, dir, "", "load", "a.csv", "--table", "t", "--key", "id"); code != 0 {
		t.Fatal(errs)
	}
	for _, args := range [][]string{
		{"checksum", "--to", "sqlite:typo.db", "--table", "t"},
		{"checksum", "--to", "file:typodir", "--table", "t"},
		{"checksum", "--to", "file:typodir?format=csv", "--table", "t"},
		{"runs", "--to", "sqlite:typo.db"},
		{"runs", "--to", "file:typodir", "--table", "t"},
		{"diff", "--to", "sqlite:typo.db", "--table", "t", "--with", "sqlite:idem.db"},
		{"diff", "--table", "t", "--with", "file:typodir"},
	} {
		code, _, errs := runIn(t, dir, "", args...)
		if code != 2 || !strings.Contains(errs, "typo") {
			t.Errorf("%v: exit %d %s, want 2 naming the target", args, code, errs)
		}
		for _, name := range []string{"typo.db", "typodir"} {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				t.Fatalf("%v created %s", args, name)
			}
		}
	}
	// The existing target still reads.
	if code, _, errs := runIn(t, dir, "", "checksum", "--table", "t"); code != 0 {
		t.Fatalf("checksum of the real target: %d %s", code, errs)
	}
}
