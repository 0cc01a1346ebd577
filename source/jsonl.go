package source

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/idemhq/idem"
)

// jsonlReader reads one JSON object per line. The columns are the keys of
// the first object in the order written, which a map-based decoder would
// lose; so each line is validated with encoding/json and then walked by a
// small scanner that can rely on that validity. Values keep their exact
// text: numbers are never parsed (12.50 stays 12.50, 1e3 stays 1e3).
type jsonlReader struct {
	lines
	fixed []string // Options.Columns, which win over the first object's keys

	index     map[string]int // key -> output position
	firstFile string

	pend     []byte // the first object's line, read by head for read to return
	pendLine int64
	hasPend  bool

	members []member
	rec     []byte // value bytes of the current record
	kbuf    []byte // unescaped keys of the current record
	mark    []uint32
	gen     uint32
}

type member struct {
	ka, kb int // key in kbuf
	keyOff int // byte offset of the key in the line
	a, b   int // value in rec
	null   bool
}

func newJSONL(name string, in *input, opt Options) *jsonlReader {
	r := &jsonlReader{lines: newLines(name, in)}
	if opt.NoHeader {
		r.fixed = opt.Columns
	}
	return r
}

func (r *jsonlReader) errf(line int64, col int, format string, args ...any) error {
	return &idem.InputError{File: r.name, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
}

// nextObject returns the next non-blank line.
func (r *jsonlReader) nextObject() ([]byte, error) {
	for {
		l, err := r.nextLine()
		if err != nil {
			return nil, err
		}
		if skipWS(l, 0) < len(l) {
			return l, nil
		}
	}
}

func (r *jsonlReader) head() ([]string, error) {
	if err := r.skipBOM(); err != nil {
		return nil, err
	}
	l, err := r.nextObject()
	if err == io.EOF {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	r.pend = append(r.pend[:0], l...)
	r.pendLine = r.line
	r.hasPend = true
	if r.fixed != nil {
		return r.fixed, nil
	}
	if err := r.parse(r.pend, r.line); err != nil {
		return nil, err
	}
	keys := make([]string, len(r.members))
	seen := make(map[string]bool, len(r.members))
	for i, m := range r.members {
		k := string(r.kbuf[m.ka:m.kb])
		if k == "" {
			// As CSV refuses an empty header name: no target takes a
			// column without a name.
			return nil, r.errf(r.line, m.keyOff+1, "empty key: every key names a column")
		}
		if seen[k] {
			return nil, r.errf(r.line, m.keyOff+1, "duplicate key %q", k)
		}
		seen[k] = true
		keys[i] = k
	}
	return keys, nil
}

// fields: a JSON object's members have no field numbers (their order is
// free), so errors name the column only.
func (r *jsonlReader) fields() []int { return make([]int, len(r.index)) }

func (r *jsonlReader) bind(cols []string, firstFile string) error {
	r.firstFile = firstFile
	r.index = make(map[string]int, len(cols))
	for i, c := range cols {
		r.index[c] = i
	}
	r.mark = make([]uint32, len(cols))
	return nil
}

func (r *jsonlReader) read(dst []idem.Value) (int64, error) {
	if !r.started {
		if err := r.skipBOM(); err != nil {
			return 0, err
		}
	}
	var l []byte
	line := r.pendLine
	if r.hasPend {
		l, r.hasPend = r.pend, false
	} else {
		var err error
		if l, err = r.nextObject(); err != nil {
			return 0, err
		}
		line = r.line
	}
	if err := r.parse(l, line); err != nil {
		return 0, err
	}
	r.gen++
	if r.gen == 0 {
		clear(r.mark)
		r.gen = 1
	}
	for i := range dst {
		dst[i] = idem.Value{Null: true}
	}
	s := string(r.rec)
	for _, m := range r.members {
		k, ok := r.index[string(r.kbuf[m.ka:m.kb])]
		if !ok {
			where := "the given columns"
			if r.firstFile != "" {
				where = "the columns of " + r.firstFile
			}
			return 0, r.errf(line, m.keyOff+1, "unexpected key %q: not among %s", r.kbuf[m.ka:m.kb], where)
		}
		if r.mark[k] == r.gen {
			return 0, r.errf(line, m.keyOff+1, "duplicate key %q", r.kbuf[m.ka:m.kb])
		}
		r.mark[k] = r.gen
		if !m.null {
			dst[k] = idem.Value{S: s[m.a:m.b]}
		}
	}
	return line, nil
}

// parse splits one line holding a JSON object into r.members.
func (r *jsonlReader) parse(l []byte, line int64) error {
	if !utf8.Valid(l) {
		return r.errf(line, firstInvalid(l)+1, "invalid UTF-8")
	}
	if !json.Valid(l) {
		// The slow path only runs for bad lines; it is there to find
		// where the JSON breaks.
		var raw json.RawMessage
		err := json.Unmarshal(l, &raw)
		col := 1
		var se *json.SyntaxError
		if errors.As(err, &se) && se.Offset > 0 {
			col = int(se.Offset)
		}
		if err == nil {
			err = errors.New("invalid JSON")
		}
		return r.errf(line, col, "malformed JSON: %v", err)
	}
	i := skipWS(l, 0)
	if l[i] != '{' {
		return r.errf(line, i+1, "expected a JSON object, got %s", jsonKind(l[i]))
	}
	members := r.members[:0]
	rec := r.rec[:0]
	kbuf := r.kbuf[:0]
	defer func() { r.members, r.rec, r.kbuf = members, rec, kbuf }()
	i = skipWS(l, i+1)
	if l[i] == '}' {
		return nil
	}
	for {
		m := member{keyOff: i, ka: len(kbuf)}
		end := stringEnd(l, i)
		var bad int
		var msg string
		kbuf, bad, msg = appendUnescaped(kbuf, l[i+1:end-1])
		if msg != "" {
			return r.errf(line, i+2+bad, "%s", msg)
		}
		m.kb = len(kbuf)
		i = skipWS(l, end)
		i = skipWS(l, i+1) // past ':'
		m.a = len(rec)
		switch c := l[i]; c {
		case '"':
			end = stringEnd(l, i)
			rec, bad, msg = appendUnescaped(rec, l[i+1:end-1])
			if msg != "" {
				return r.errf(line, i+2+bad, "%s", msg)
			}
			i = end
		case 'n':
			m.null = true
			i += len("null")
		case 't':
			rec = append(rec, "true"...)
			i += len("true")
		case 'f':
			rec = append(rec, "false"...)
			i += len("false")
		case '{', '[':
			end = compositeEnd(l, i)
			rec = appendCompact(rec, l[i:end])
			i = end
		default:
			end = i
			for end < len(l) && isNumByte(l[end]) {
				end++
			}
			rec = append(rec, l[i:end]...)
			i = end
		}
		m.b = len(rec)
		members = append(members, m)
		if len(rec) > maxRecord {
			return r.errf(line, 0, "record longer than %d MiB", maxRecord>>20)
		}
		i = skipWS(l, i)
		if i >= len(l) || l[i] != ',' {
			return nil // '}' by validity
		}
		i = skipWS(l, i+1)
	}
}

func jsonKind(c byte) string {
	switch c {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}

func skipWS(l []byte, i int) int {
	for i < len(l) {
		switch l[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

func isNumByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// stringEnd returns the index just past the string starting at l[i] == '"'.
func stringEnd(l []byte, i int) int {
	for j := i + 1; j < len(l); j++ {
		switch l[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(l)
}

// compositeEnd returns the index just past the object or array at l[i].
func compositeEnd(l []byte, i int) int {
	depth := 0
	for j := i; j < len(l); j++ {
		switch l[j] {
		case '"':
			j = stringEnd(l, j) - 1
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return j + 1
			}
		}
	}
	return len(l)
}

// appendCompact drops insignificant whitespace from valid JSON, leaving
// strings (escapes included) as written.
func appendCompact(dst, v []byte) []byte {
	for j := 0; j < len(v); j++ {
		switch c := v[j]; c {
		case ' ', '\t', '\r', '\n':
		case '"':
			e := stringEnd(v, j)
			dst = append(dst, v[j:e]...)
			j = e - 1
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// appendUnescaped decodes the inside of a valid JSON string. Unlike
// encoding/json, which quietly substitutes U+FFFD, it rejects escapes that
// have no exact UTF-8 form (lone surrogates) and \u0000, which no SQL
// text column can hold. On failure it returns the offset of the bad escape
// and a message.
func appendUnescaped(dst, s []byte) ([]byte, int, string) {
	i := 0
	for {
		k := bytes.IndexByte(s[i:], '\\')
		if k < 0 {
			return append(dst, s[i:]...), 0, ""
		}
		dst = append(dst, s[i:i+k]...)
		i += k
		if i+1 >= len(s) {
			return dst, i, "bad escape"
		}
		n := 2
		switch s[i+1] {
		case '"', '\\', '/':
			dst = append(dst, s[i+1])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			c, ok := hex4(s[i+2:])
			if !ok {
				return dst, i, "bad \\u escape"
			}
			n = 6
			if utf16.IsSurrogate(c) {
				c2, ok2 := rune(0), false
				if i+12 <= len(s) && s[i+6] == '\\' && s[i+7] == 'u' {
					c2, ok2 = hex4(s[i+8:])
				}
				c = utf16.DecodeRune(c, c2)
				if !ok2 || c == utf8.RuneError {
					return dst, i, "lone UTF-16 surrogate in \\u escape"
				}
				n = 12
			}
			if c == 0 {
				return dst, i, "\\u0000 (NUL) in string"
			}
			dst = utf8.AppendRune(dst, c)
		default:
			return dst, i, "bad escape"
		}
		i += n
	}
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
