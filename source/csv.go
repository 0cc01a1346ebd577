package source

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/idemhq/idem"
)

// csvReader parses RFC 4180 CSV, and TSV with the same quoting rules.
//
// It is hand-written rather than built on encoding/csv because that package
// cannot tell a quoted field from an unquoted one, and PostgreSQL's CSV NULL
// convention (which idem promises to match) depends on exactly that: an
// unquoted empty field is NULL, a quoted empty field "" is the empty string,
// and a field matching the --null marker is NULL only when unquoted.
//
// Where PostgreSQL is lenient this reader is strict, so that a damaged file
// fails loudly instead of loading shifted values:
//   - a quote inside an unquoted field (ab"c) and text after a closing quote
//     ("ab"c) are errors; PostgreSQL silently toggles quoting mid-field;
//   - a carriage return outside quotes that is not part of CRLF is an error
//     (PostgreSQL also rejects it unless the whole file uses CR line ends);
//   - invalid UTF-8 and NUL bytes are errors, as in PostgreSQL.
//
// A blank line is a record of one NULL field, as in PostgreSQL, so it only
// loads into a one-column input; elsewhere it is a field-count error.
type csvReader struct {
	lines
	delim byte
	null  string // an unquoted field equal to this is NULL
	class [256]uint8
	noHdr []string

	rec   []byte   // unescaped bytes of the current record (quoted path)
	spans []span   // field bounds of the current record
	str   string   // the current record's bytes; fields are slices of it
	names []string // this file's column names, for error messages
	perm  []int    // field i of this file goes to output position perm[i]
}

// Byte classes for the unquoted fast path.
const (
	clsPlain = iota
	clsHigh  // NUL or non-ASCII: check UTF-8 and NUL once per record
	clsDelim
	clsQuote
	clsCR
	clsLF
)

type span struct {
	a, b   int
	quoted bool
}

func newCSV(name string, in *input, delim byte, opt Options) (*csvReader, error) {
	if strings.IndexByte(opt.Null, delim) >= 0 {
		in.Close()
		return nil, idem.BadInput("--null must not contain the field delimiter")
	}
	r := &csvReader{
		lines: newLines(name, in),
		delim: delim,
		null:  opt.Null,
	}
	if opt.NoHeader {
		r.noHdr = opt.Columns
	}
	r.class[delim] = clsDelim
	r.class['"'] = clsQuote
	r.class['\r'] = clsCR
	r.class['\n'] = clsLF
	r.class[0] = clsHigh
	for c := 0x80; c < 0x100; c++ {
		r.class[c] = clsHigh
	}
	return r, nil
}

func (r *csvReader) errf(line int64, col int, format string, args ...any) error {
	e := &idem.InputError{File: r.name, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
	if col > 0 && col <= len(r.names) {
		e.Column = r.names[col-1]
	}
	return e
}

func (r *csvReader) head() ([]string, error) {
	if err := r.skipBOM(); err != nil {
		return nil, err
	}
	if r.noHdr != nil {
		if _, err := r.br.Peek(1); err == io.EOF {
			return nil, nil
		} else if err != nil {
			return nil, r.ioErr(err)
		}
		r.names = r.noHdr
		return r.noHdr, nil
	}
	start, err := r.parse()
	if err == io.EOF {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, len(r.spans))
	seen := make(map[string]int, len(r.spans))
	for i, sp := range r.spans {
		n := r.str[sp.a:sp.b]
		if n == "" {
			return nil, r.errf(start, i+1, "empty column name in header")
		}
		if j, dup := seen[n]; dup {
			return nil, r.errf(start, i+1, "duplicate column name %q in header (also column %d)", n, j+1)
		}
		seen[n] = i
		names[i] = n
	}
	r.names = names
	return names, nil
}

func (r *csvReader) bind(cols []string, firstFile string) error {
	r.perm = make([]int, len(r.names))
	if r.noHdr != nil {
		for i := range r.perm {
			r.perm[i] = i
		}
		return nil
	}
	if err := sameColumns(r.name, r.names, cols, firstFile); err != nil {
		return err
	}
	pos := make(map[string]int, len(cols))
	for i, c := range cols {
		pos[c] = i
	}
	for i, n := range r.names {
		r.perm[i] = pos[n]
	}
	return nil
}

// fields gives each column's field number in this file when the header
// lists them in another order than the first file's, else nil.
func (r *csvReader) fields() []int {
	out := make([]int, len(r.perm))
	moved := false
	for field, col := range r.perm {
		out[col] = field + 1
		moved = moved || col != field
	}
	if !moved {
		return nil
	}
	return out
}

// sameColumns checks that a later file's header has exactly the columns of
// the first file, so that reordering can map every field.
func sameColumns(name string, have, want []string, firstFile string) error {
	in := make(map[string]bool, len(have))
	for _, h := range have {
		in[h] = true
	}
	var missing, extra []string
	wanted := make(map[string]bool, len(want))
	for _, w := range want {
		wanted[w] = true
		if !in[w] {
			missing = append(missing, fmt.Sprintf("%q", w))
		}
	}
	for _, h := range have {
		if !wanted[h] {
			extra = append(extra, fmt.Sprintf("%q", h))
		}
	}
	if len(missing) == 0 && len(extra) == 0 {
		return nil
	}
	msg := "columns differ from " + firstFile + ":"
	if len(missing) > 0 {
		msg += " missing " + strings.Join(missing, ", ")
		if len(extra) > 0 {
			msg += ";"
		}
	}
	if len(extra) > 0 {
		msg += " unexpected " + strings.Join(extra, ", ")
	}
	return &idem.InputError{File: name, Line: 1, Msg: msg}
}

func (r *csvReader) read(dst []idem.Value) (int64, error) {
	if !r.started {
		if err := r.skipBOM(); err != nil {
			return 0, err
		}
	}
	start, err := r.parse()
	if err != nil {
		return 0, err
	}
	perm, spans, s := r.perm, r.spans, r.str
	if len(spans) != len(perm) {
		n := min(len(spans), len(perm)) + 1
		msg := fmt.Sprintf("expected %d fields, got %d", len(perm), len(spans))
		if len(s) == 0 && len(spans) == 1 && !spans[0].quoted {
			msg += " (blank line)"
		}
		return 0, &idem.InputError{File: r.name, Line: start, Col: n, Msg: msg}
	}
	for i, sp := range spans {
		f := s[sp.a:sp.b]
		if !sp.quoted && f == r.null {
			dst[perm[i]] = idem.Value{Null: true}
		} else {
			dst[perm[i]] = idem.Value{S: f}
		}
	}
	return start, nil
}

// parse reads one record into r.str and r.spans and returns the line it
// starts on.
func (r *csvReader) parse() (int64, error) {
	l, err := r.nextLine()
	if err != nil {
		return 0, err
	}
	start := r.line
	// Fast path, the common case: no quotes, so the record is the line
	// itself and needs no unescaping. One pass over a class table splits
	// fields and spots anything unusual; on 70-byte rows this beats
	// several bytes.IndexByte passes, whose setup cost dominates.
	content := l
	if n := len(content); n > 0 && content[n-1] == '\n' {
		content = content[:n-1]
		if n := len(content); n > 0 && content[n-1] == '\r' {
			content = content[:n-1]
		}
	}
	spans := r.spans[:0]
	cls := &r.class
	a := 0
	odd := false
	for i, c := range content {
		switch cls[c] {
		case clsPlain:
		case clsDelim:
			spans = append(spans, span{a: a, b: i})
			a = i + 1
		case clsQuote:
			r.spans = spans
			if i != a {
				return start, r.errf(start, len(spans)+1, "unexpected quote in unquoted field (quote the whole field and double the quotes inside)")
			}
			return start, r.parseQuoted(l, start, i)
		default:
			odd = true
		}
	}
	spans = append(spans, span{a: a, b: len(content)})
	r.spans = spans
	if odd {
		if cr := bytes.IndexByte(content, '\r'); cr >= 0 {
			return start, r.errf(start, fieldAt(spans, cr), "carriage return in unquoted field (quote the field, or use LF or CRLF line ends)")
		}
		if err := r.check(content, start); err != nil {
			return start, err
		}
	}
	r.str = string(content)
	return start, nil
}

func fieldAt(spans []span, off int) int {
	for i, sp := range spans {
		if off <= sp.b {
			return i + 1
		}
	}
	return len(spans)
}

// check rejects invalid UTF-8 and NUL bytes in a record, naming the field
// and the physical line of the first bad byte.
func (r *csvReader) check(rec []byte, start int64) error {
	if utf8.Valid(rec) && bytes.IndexByte(rec, 0) < 0 {
		return nil
	}
	for i, sp := range r.spans {
		f := rec[sp.a:sp.b]
		msg := ""
		off := 0
		if z := bytes.IndexByte(f, 0); z >= 0 {
			msg, off = "NUL byte in field", z
		}
		if !utf8.Valid(f) {
			bad := firstInvalid(f)
			if msg == "" || bad < off {
				msg, off = "invalid UTF-8 in field", bad
			}
		}
		if msg != "" {
			line := start + int64(bytes.Count(rec[:sp.a+off], []byte{'\n'}))
			return r.errf(line, i+1, "%s", msg)
		}
	}
	return r.errf(start, 0, "invalid UTF-8")
}

func firstInvalid(b []byte) int {
	for i := 0; i < len(b); {
		c, n := utf8.DecodeRune(b[i:])
		if c == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// parseQuoted finishes a record that holds a quote. l[:i] is made of
// complete unquoted fields already split into r.spans, and l[i] opens a
// quoted field. Fields are unescaped into r.rec; a quoted field may go on
// over further lines.
func (r *csvReader) parseQuoted(l []byte, start int64, i int) error {
	rec := append(r.rec[:0], l[:i]...)
	spans := r.spans
	defer func() { r.rec, r.spans = rec, spans }()
	if cr := bytes.IndexByte(rec, '\r'); cr >= 0 {
		return r.errf(start, fieldAt(spans, cr), "carriage return in unquoted field (quote the field, or use LF or CRLF line ends)")
	}
	cls := &r.class
	d := r.delim
	for {
		fs := len(rec)
		col := len(spans) + 1
		if i < len(l) && l[i] == '"' {
			qline := r.line
			i++
			for {
				j := bytes.IndexByte(l[i:], '"')
				if j < 0 {
					rec = append(rec, l[i:]...)
					if len(rec) > maxRecord {
						return r.errf(qline, col, "quoted field longer than %d MiB; is the quote opened here closed?", maxRecord>>20)
					}
					var err error
					l, err = r.nextLine()
					if err == io.EOF {
						return r.errf(qline, col, "unterminated quoted field")
					}
					if err != nil {
						return err
					}
					i = 0
					continue
				}
				rec = append(rec, l[i:i+j]...)
				i += j + 1
				if i < len(l) && l[i] == '"' {
					rec = append(rec, '"')
					i++
					continue
				}
				break
			}
			spans = append(spans, span{a: fs, b: len(rec), quoted: true})
			if i == len(l) {
				break // end of file right after the closing quote
			}
			c := l[i]
			if c == d {
				i++
				continue
			}
			if c == '\n' || (c == '\r' && i+1 < len(l) && l[i+1] == '\n') {
				break
			}
			return r.errf(r.line, col, "unexpected text after closing quote")
		}
		j := i
		for j < len(l) && cls[l[j]] <= clsHigh {
			j++
		}
		rec = append(rec, l[i:j]...)
		spans = append(spans, span{a: fs, b: len(rec)})
		if j == len(l) {
			break
		}
		switch c := l[j]; {
		case c == d:
			i = j + 1
			continue
		case c == '\n', c == '\r' && j+1 < len(l) && l[j+1] == '\n':
		case c == '"':
			return r.errf(r.line, col, "unexpected quote in unquoted field (quote the whole field and double the quotes inside)")
		default:
			return r.errf(r.line, col, "carriage return in unquoted field (quote the field, or use LF or CRLF line ends)")
		}
		break
	}
	r.spans = spans
	if err := r.check(rec, start); err != nil {
		return err
	}
	r.str = string(rec)
	return nil
}
