// Package source reads data files (CSV, TSV, JSON lines, optionally gzip or
// zstd compressed) as an idem.RecordReader.
//
// CSV follows RFC 4180 and PostgreSQL's NULL convention, so a file loads
// the same rows as `psql \copy ... csv header` would (see csvReader for the
// few places where this reader is stricter). Errors are *idem.InputError
// with the file as named, the physical line where the record starts (or
// where the fault is, for faults inside a multi-line record), and a column:
// for CSV/TSV the 1-based field number, for JSON lines the 1-based byte
// offset in the line.
package source

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/idemhq/idem"
)

// Options controls how files are parsed.
type Options struct {
	// Format is "csv", "tsv", "jsonl" (alias "ndjson"), "parquet", or "" to infer it
	// from each file's extension (.csv .tsv .jsonl .ndjson, optionally
	// followed by .gz or .zst). Required for "-" (stdin).
	Format string
	// NoHeader means the first line of a CSV/TSV file is data; Columns then
	// names the fields.
	NoHeader bool
	// Columns names the fields when NoHeader is set. For JSON lines it
	// fixes the column order instead of taking it from the first object.
	Columns []string
	// Null is the CSV/TSV NULL marker: an unquoted field equal to it is
	// NULL. "" is PostgreSQL's CSV default (unquoted empty field is NULL).
	// JSON lines have their own null and ignore it.
	Null string
	// HasNull records that Null was given explicitly. Parsing does not need
	// it: PostgreSQL treats an explicit empty marker exactly like the
	// default, and so does this package.
	HasNull bool
}

// bufSize is the read buffer per file. Large reads keep syscall overhead
// negligible next to parsing; much larger stops fitting in L2.
const bufSize = 256 << 10

// maxRecord bounds one record's size so that a quote left open near the
// start of a large file fails with a pointer to the quote instead of
// reading the whole file into memory.
var maxRecord = 64 << 20

const (
	formatCSV   = "csv"
	formatTSV   = "tsv"
	formatJSONL = "jsonl"
)

// fileReader is one open input file.
type fileReader interface {
	// head returns the file's own column names: the CSV header, or the keys
	// of the first JSON object. nil means the file has no records at all.
	head() ([]string, error)
	// bind fixes the output columns. It fails when this file cannot supply
	// them (a CSV header with a different set of names).
	bind(cols []string, firstFile string) error
	// read fills dst (len(cols)) with the next record and returns the line
	// it starts on, or io.EOF.
	read(dst []idem.Value) (int64, error)
	close() error
}

// fielder is a fileReader whose fields are not always in the columns'
// order: fields returns idem.Pos.Fields for its records.
type fielder interface {
	fields() []int
}

// Expand returns the concrete file list for patterns: globs expanded and
// sorted within each pattern, duplicates removed (the first spelling wins),
// "-" kept as is. A pattern that matches nothing is an *idem.InputError.
func Expand(patterns []string) ([]string, error) {
	var out []string
	seen := make(map[string]bool)
	add := func(name string) {
		key := name
		if name != "-" {
			key = filepath.Clean(name)
		}
		if !seen[key] {
			seen[key] = true
			out = append(out, name)
		}
	}
	for _, p := range patterns {
		if p == "-" {
			add(p)
			continue
		}
		// An existing path is taken literally even if it contains glob
		// metacharacters: the shell has usually expanded globs already,
		// and "report[2024].csv" must not turn into a character class.
		if st, err := os.Stat(p); err == nil {
			if st.IsDir() {
				return nil, &idem.InputError{File: p, Msg: "is a directory, not a data file"}
			}
			add(p)
			continue
		}
		if !hasMeta(p) {
			return nil, &idem.InputError{File: p, Msg: "no such file"}
		}
		matches, err := filepath.Glob(p)
		if err != nil {
			return nil, &idem.InputError{File: p, Msg: "bad glob pattern", Err: err}
		}
		sort.Strings(matches)
		n := 0
		for _, m := range matches {
			// A glob like data/* may also catch subdirectories; they are
			// not inputs, so skip them rather than fail.
			if st, err := os.Stat(m); err != nil || st.IsDir() || hidden(p, m) {
				continue
			}
			add(m)
			n++
		}
		if n == 0 {
			return nil, &idem.InputError{File: p, Msg: "no files match"}
		}
	}
	return out, nil
}

// hidden reports whether a wildcard matched a dot file, which shells leave
// out (and which are usually .DS_Store or editor files, not data) unless
// the pattern spells the dot.
func hidden(pattern, match string) bool {
	pp := strings.Split(filepath.ToSlash(filepath.Clean(pattern)), "/")
	mp := strings.Split(filepath.ToSlash(filepath.Clean(match)), "/")
	if len(pp) != len(mp) {
		pp, mp = pp[len(pp)-1:], mp[len(mp)-1:]
	}
	for i := range pp {
		if hasMeta(pp[i]) && !strings.HasPrefix(pp[i], ".") && strings.HasPrefix(mp[i], ".") {
			return true
		}
	}
	return false
}

func hasMeta(p string) bool {
	return strings.ContainsAny(p, `*?[\`)
}

// Digest returns a hex SHA-256 over the raw bytes of files in order, each
// prefixed by its length as 8 big-endian bytes, so that file boundaries
// matter but names do not. It covers bytes only: callers that compare
// digests must also compare the parsing options. Stdin cannot be digested
// without consuming it; Spool it first.
func Digest(files []string) (string, error) {
	h := sha256.New()
	buf := make([]byte, bufSize)
	for _, name := range files {
		if name == "-" {
			return "", errors.New("source: cannot digest stdin; spool it to a file first")
		}
		f, err := os.Open(name)
		if err != nil {
			return "", openError(name, err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return "", err
		}
		if !st.Mode().IsRegular() {
			f.Close()
			return "", fmt.Errorf("source: cannot digest %s: not a regular file", name)
		}
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(st.Size()))
		h.Write(n[:])
		// The wrapper hides os.File's WriterTo so the large buffer is used.
		c, err := io.CopyBuffer(h, struct{ io.Reader }{f}, buf)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("source: reading %s: %w", name, err)
		}
		if c != st.Size() {
			return "", fmt.Errorf("source: %s changed size while being read", name)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Spool copies r into a new temporary file in dir (os.TempDir when "") and
// returns its path, so stdin can be digested and then parsed like a file.
// To keep error messages naming "-", open the spooled file and pass it to
// Open as stdin with the pattern "-". The caller removes the file.
func Spool(r io.Reader, dir string) (string, error) {
	f, err := os.CreateTemp(dir, "idem-stdin-*.spool")
	if err != nil {
		return "", err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("source: spooling stdin: %w", err)
	}
	return f.Name(), nil
}

// Open expands patterns (see Expand), and returns one reader over all the
// files in order. "-" reads stdin and needs opt.Format. The columns come
// from the first file that has any; every later file must have the same
// set of columns, in any order.
func Open(patterns []string, stdin io.Reader, opt Options) (idem.RecordReader, error) {
	if len(patterns) == 0 {
		return nil, idem.BadInput("no input files")
	}
	if err := checkOptions(&opt); err != nil {
		return nil, err
	}
	files, err := Expand(patterns)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if f == "-" && opt.Format == "" {
			return nil, idem.BadInput("reading stdin (-) needs --format (csv, tsv, jsonl or parquet)")
		}
		if _, err := formatOf(f, opt.Format); err != nil {
			return nil, err
		}
	}
	r := &reader{opt: opt, files: files, stdin: stdin}
	if opt.NoHeader {
		r.cols = opt.Columns
	}
	if err := r.advance(); err != nil {
		r.Close()
		return nil, err
	}
	if r.cur == nil {
		r.err = io.EOF
	}
	r.vals = make([]idem.Value, len(r.cols))
	return r, nil
}

func checkOptions(opt *Options) error {
	switch f := strings.ToLower(opt.Format); f {
	case "", formatCSV, formatTSV, formatJSONL, formatParquet:
		opt.Format = f
	case "ndjson":
		opt.Format = formatJSONL
	default:
		return idem.BadInput("unknown format %q (want csv, tsv, jsonl or parquet)", opt.Format)
	}
	if opt.NoHeader && len(opt.Columns) == 0 {
		return idem.BadInput("--no-header needs --columns")
	}
	if !opt.NoHeader && len(opt.Columns) > 0 {
		return idem.BadInput("--columns needs --no-header")
	}
	seen := make(map[string]bool, len(opt.Columns))
	for _, c := range opt.Columns {
		if c == "" {
			return idem.BadInput("empty column name in --columns")
		}
		if seen[c] {
			return idem.BadInput("duplicate column name %q in --columns", c)
		}
		seen[c] = true
	}
	// PostgreSQL refuses these markers too: a marker holding a quote or a
	// line break could never be told apart from data.
	if strings.ContainsAny(opt.Null, "\"\r\n") {
		return idem.BadInput("--null must not contain a quote or a line break")
	}
	return nil
}

// formatOf picks the parser for a file: forced, or from the extension
// under an optional compression suffix.
func formatOf(name, forced string) (string, error) {
	if forced != "" {
		return forced, nil
	}
	base := strings.ToLower(name)
	base = strings.TrimSuffix(strings.TrimSuffix(base, ".gz"), ".zst")
	switch filepath.Ext(base) {
	case ".csv":
		return formatCSV, nil
	case ".tsv":
		return formatTSV, nil
	case ".jsonl", ".ndjson":
		return formatJSONL, nil
	case ".parquet":
		return formatParquet, nil
	}
	return "", &idem.InputError{File: name, Msg: "cannot tell the format from the file name; give --format (csv, tsv, jsonl or parquet)"}
}

func openError(name string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return &idem.InputError{File: name, Msg: "no such file"}
	}
	if errors.Is(err, fs.ErrPermission) {
		return &idem.InputError{File: name, Msg: "permission denied"}
	}
	return err
}

// reader chains the files.
type reader struct {
	opt     Options
	files   []string
	stdin   io.Reader
	next    int // index in files of the next file to open
	cur     fileReader
	curName string
	cols    []string
	first   string // the file the columns came from
	fields  []int  // the current file's field numbers (idem.Pos.Fields)
	vals    []idem.Value
	err     error // sticky: io.EOF, the first error, or errClosed
}

var errClosed = errors.New("source: reader is closed")

func (r *reader) Columns() []string { return r.cols }

func (r *reader) Read() ([]idem.Value, idem.Pos, error) {
	for r.err == nil {
		line, err := r.cur.read(r.vals)
		if err == nil {
			return r.vals, idem.Pos{File: r.curName, Line: line, Fields: r.fields}, nil
		}
		if err != io.EOF {
			r.err = err
			break
		}
		err = r.cur.close()
		r.cur = nil
		if err == nil {
			err = r.advance()
		}
		if err != nil {
			r.err = err
		} else if r.cur == nil {
			r.err = io.EOF
		}
	}
	return nil, idem.Pos{}, r.err
}

func (r *reader) Close() error {
	var err error
	if r.cur != nil {
		err = r.cur.close()
		r.cur = nil
	}
	if r.err == nil || r.err == io.EOF {
		r.err = errClosed
	}
	return err
}

// advance opens files until one with records is found (r.cur set) or the
// list is exhausted (r.cur nil). Empty files are skipped: psql loads zero
// rows from them without complaint, and a header-only file is not empty.
func (r *reader) advance() error {
	for r.next < len(r.files) {
		name := r.files[r.next]
		r.next++
		fr, err := r.openFile(name)
		if err != nil {
			return err
		}
		cols, err := fr.head()
		if err == nil && cols == nil {
			if err := fr.close(); err != nil {
				return err
			}
			continue
		}
		if err == nil && r.cols == nil {
			r.cols, r.first = cols, name
		}
		if err == nil {
			err = fr.bind(r.cols, r.first)
		}
		if err != nil {
			fr.close()
			return err
		}
		r.cur, r.curName, r.fields = fr, name, nil
		if f, ok := fr.(fielder); ok {
			r.fields = f.fields()
		}
		return nil
	}
	return nil
}

func (r *reader) openFile(name string) (fileReader, error) {
	format, err := formatOf(name, r.opt.Format)
	if err != nil {
		return nil, err
	}
	var (
		src    io.Reader
		closer io.Closer
		comp   string
		size   int64 = -1 // bytes in the file, when known
	)
	if name == "-" {
		if r.stdin == nil {
			return nil, idem.BadInput("no stdin to read")
		}
		// Stdin has no name to go by, so look at the content. Neither
		// magic number is valid UTF-8, so no text input is mistaken.
		br := bufio.NewReaderSize(r.stdin, bufSize)
		magic, _ := br.Peek(4)
		switch {
		case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
			comp = "gzip"
		case len(magic) == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd:
			comp = "zstd"
		}
		src = br
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, openError(name, err)
		}
		if st, err := f.Stat(); err == nil && st.IsDir() {
			f.Close()
			return nil, &idem.InputError{File: name, Msg: "is a directory, not a data file"}
		}
		src, closer = f, f
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			size = st.Size()
		}
		lower := strings.ToLower(name)
		switch {
		case strings.HasSuffix(lower, ".gz"):
			comp = "gzip"
		case strings.HasSuffix(lower, ".zst"):
			comp = "zstd"
		}
	}
	if format == formatParquet {
		f, _ := closer.(*os.File)
		return openParquetFile(name, f, src, comp)
	}
	rc, err := decompress(name, src, closer, comp)
	if err != nil {
		return nil, err
	}
	if comp == "" {
		rc.size = size
	}
	switch format {
	case formatJSONL:
		return newJSONL(name, rc, r.opt), nil
	case formatTSV:
		return newCSV(name, rc, '\t', r.opt)
	default:
		return newCSV(name, rc, ',', r.opt)
	}
}
