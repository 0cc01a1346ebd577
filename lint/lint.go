// Package lint finds the seed reference's non-idempotent patterns in SQL,
// Python and Go source (idem lint): plain INSERTs, runtime timestamps and
// random values in data, auto-increment keys, append-mode writes, POSTs
// without an idempotency key, unguarded notification sends and SQL built
// by string formatting.
//
// Go files are read with go/parser. SQL and Python get lexers of their own:
// no pure-Go parser covers the SQL dialects (PostgreSQL, MySQL, SQLite)
// and Python versions a pipeline repository mixes, and a rule here needs
// tokens with their positions (never inside a comment or a string), the
// statement or call they belong to and, for Python, the enclosing def,
// which a lexer gives exactly without failing on syntax it does not know.
package lint

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// Rule names one pattern.
type Rule string

const (
	PlainInsert      Rule = "plain-insert"
	NowInData        Rule = "now-in-data"
	RandomValue      Rule = "random-value"
	AutoIncrementKey Rule = "auto-increment-key"
	AppendWrite      Rule = "append-write"
	AppendNoDelete   Rule = "append-without-delete"
	PostWithoutKey   Rule = "post-without-key"
	UnguardedSend    Rule = "unguarded-send"
	SQLStringFormat  Rule = "sql-string-format"
)

// Rules lists every rule with what it means, for --help, --disable and
// SARIF's rule table.
var Rules = []struct {
	Rule Rule
	Help string
}{
	{PlainInsert, "INSERT (or COPY FROM) without conflict handling and without deleting its scope first: a retry duplicates rows"},
	{NowInData, "runtime timestamp (NOW(), datetime.now(), time.Now()) written to data: a retry or backfill writes another value"},
	{RandomValue, "random value or UUID written to data: a retry writes another value"},
	{AutoIncrementKey, "auto-increment key (SERIAL, AUTO_INCREMENT, IDENTITY): a retry gives the same row another id"},
	{AppendWrite, "file opened or written in append mode: a retry appends the rows again"},
	{AppendNoDelete, "to_sql(if_exists='append') without deleting the rows' scope first: a retry appends them again"},
	{PostWithoutKey, "HTTP POST without an Idempotency-Key header: a retried call can charge or create twice"},
	{UnguardedSend, "email or notification sent with no sent-flag or idempotency guard in sight: a retry sends it again"},
	{SQLStringFormat, "SQL built by string formatting: values belong in bound parameters, identifiers must be quoted"},
}

// Finding is one match.
type Finding struct {
	Path    string `json:"path"`
	Line    int    `json:"line"`
	Col     int    `json:"col"`
	Rule    Rule   `json:"rule"`
	Message string `json:"message"`
}

func (f Finding) String() string {
	return fmt.Sprintf("%s:%d:%d %s %s", f.Path, f.Line, f.Col, f.Rule, f.Message)
}

// SyntaxError is a file the lexer or parser cannot read (an unterminated
// string or comment, Go that does not parse).
type SyntaxError struct {
	Path      string
	Line, Col int
	Msg       string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.Path, e.Line, e.Col, e.Msg)
}

// Supported reports whether path's extension is one lint reads.
func Supported(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".sql", ".py", ".go":
		return true
	}
	return false
}

// File lints one file's source, by its extension; findings come sorted by
// position.
func File(path string, src []byte) ([]Finding, error) {
	var fs []Finding
	var err error
	switch strings.ToLower(filepath.Ext(path)) {
	case ".sql":
		fs, err = sqlFile(path, string(src))
	case ".py":
		fs, err = pythonFile(path, string(src))
	case ".go":
		fs, err = goFile(path, src)
	default:
		return nil, nil
	}
	fs = ignored(fs, string(src))
	sort.SliceStable(fs, func(i, j int) bool {
		if fs[i].Line != fs[j].Line {
			return fs[i].Line < fs[j].Line
		}
		return fs[i].Col < fs[j].Col
	})
	return fs, err
}

// pos is a 1-based line and column (in bytes).
type pos struct{ line, col int }

// shift places a position found inside an embedded SQL string at its
// place in the host file: start is where the string's content begins.
func shift(p, start pos) pos {
	if p.line == 1 {
		return pos{start.line, start.col + p.col - 1}
	}
	return pos{start.line + p.line - 1, p.col}
}

// Ignore is the directive that silences findings where a pattern is
// meant (a lease that must use the clock, an audit log that must append):
// "idem:ignore" in a comment on the finding's line or the line above,
// optionally followed by the rules it silences and a reason ("idem:ignore
// now-in-data, plain-insert: the lease reads the clock"); naming no rule
// silences all.
const Ignore = "idem:ignore"

func ignored(fs []Finding, src string) []Finding {
	if len(fs) == 0 || !strings.Contains(src, Ignore) {
		return fs
	}
	lines := strings.Split(src, "\n")
	silenced := func(line int, r Rule) bool {
		for _, l := range []int{line - 1, line - 2} { // this line, the one above
			if l < 0 || l >= len(lines) {
				continue
			}
			i := strings.Index(lines[l], Ignore)
			if i < 0 {
				continue
			}
			// Rule names may be separated by commas or spaces and
			// followed by a reason; with no rule name at all, every rule.
			named := false
			for _, w := range strings.FieldsFunc(lines[l][i+len(Ignore):], func(c rune) bool { return c == ',' || c == ' ' || c == '\t' }) {
				w = strings.Trim(w, ":;.()*/")
				if !Known(Rule(w)) {
					continue
				}
				named = true
				if Rule(w) == r {
					return true
				}
			}
			if !named {
				return true
			}
		}
		return false
	}
	out := fs[:0]
	for _, f := range fs {
		if !silenced(f.Line, f.Rule) {
			out = append(out, f)
		}
	}
	return out
}

// cursor walks source text, keeping the 1-based line and byte column of
// its next byte for the lexers.
type cursor struct {
	src          string
	i, line, col int
}

// adv moves n bytes on.
func (c *cursor) adv(n int) {
	for k := 0; k < n && c.i < len(c.src); k++ {
		if c.src[c.i] == '\n' {
			c.line, c.col = c.line+1, 1
		} else {
			c.col++
		}
		c.i++
	}
}

// Known reports whether r names a rule.
func Known(r Rule) bool {
	for _, x := range Rules {
		if x.Rule == r {
			return true
		}
	}
	return false
}

// blankEscapes hides the escape sequences of a string literal's source
// text from the SQL lexer without moving anything: "\n" would otherwise
// glue onto the next word ("\nON CONFLICT" read as "NON"). An escaped
// quote keeps its quote, everything else becomes spaces.
func blankEscapes(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	b := []byte(s)
	for i := 0; i+1 < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		switch b[i+1] {
		case '"', '\'':
			b[i] = ' '
		default:
			b[i], b[i+1] = ' ', ' '
		}
		i++
	}
	return string(b)
}
