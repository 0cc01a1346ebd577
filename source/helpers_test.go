package source

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/idemhq/idem"
)

var null = idem.Null

func v(s string) idem.Value { return idem.V(s) }

// row turns strings into values; "\x00" stands for NULL, which no input
// can produce as text because NUL bytes are rejected.
func row(ss ...string) []idem.Value {
	out := make([]idem.Value, len(ss))
	for i, s := range ss {
		if s == "\x00" {
			out[i] = null
		} else {
			out[i] = v(s)
		}
	}
	return out
}

const N = "\x00"

type result struct {
	cols  []string
	rows  [][]idem.Value
	lines []int64
	files []string
}

// readAll drains a reader, copying each record because the slice is
// reused; the strings are kept as returned, which also checks that they
// stay valid after later reads.
func readAll(rr idem.RecordReader) (result, error) {
	res := result{cols: rr.Columns()}
	for {
		vals, pos, err := rr.Read()
		if err == io.EOF {
			return res, nil
		}
		if err != nil {
			return res, err
		}
		if len(vals) != len(res.cols) {
			return res, errors.New("record length differs from Columns")
		}
		res.rows = append(res.rows, append([]idem.Value(nil), vals...))
		res.lines = append(res.lines, pos.Line)
		res.files = append(res.files, pos.File)
	}
}

// openAll opens patterns and reads everything, closing the reader.
func openAll(patterns []string, stdin io.Reader, opt Options) (result, error) {
	rr, err := Open(patterns, stdin, opt)
	if err != nil {
		return result{}, err
	}
	defer rr.Close()
	return readAll(rr)
}

// inDir creates files in a fresh directory and makes it the working
// directory, so error messages carry the short names.
func inDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	return dir
}

func wantInputError(t *testing.T, err error, contains string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want error containing %q, got none", contains)
	}
	var ie *idem.InputError
	if !errors.As(err, &ie) {
		t.Fatalf("want *idem.InputError, got %T: %v", err, err)
	}
	if !strings.Contains(err.Error(), contains) {
		t.Fatalf("error %q does not contain %q", err.Error(), contains)
	}
}

func checkRows(t *testing.T, got result, cols []string, rows [][]idem.Value) {
	t.Helper()
	if !reflect.DeepEqual(got.cols, cols) && !(len(got.cols) == 0 && len(cols) == 0) {
		t.Errorf("columns = %q, want %q", got.cols, cols)
	}
	if len(got.rows) != len(rows) {
		t.Fatalf("got %d rows %v, want %d %v", len(got.rows), got.rows, len(rows), rows)
	}
	for i := range rows {
		if !reflect.DeepEqual(got.rows[i], rows[i]) {
			t.Errorf("row %d = %#v, want %#v", i, got.rows[i], rows[i])
		}
	}
}
