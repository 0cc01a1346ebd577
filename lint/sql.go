package lint

import (
	"fmt"
	"sort"
	"strings"
)

// sqlKind is a SQL token's class.
type sqlKind int

const (
	sqlWord  sqlKind = iota // keyword or bare identifier (text upper-cased)
	sqlIdent                // quoted identifier (text as written, unquoted)
	sqlStr                  // string literal (text: its content)
	sqlNum
	sqlParam // $1, ?, :name, %s, %(name)s
	sqlPunct
)

type sqlTok struct {
	kind sqlKind
	text string
	off  int // byte offset in the linted text
	body int // for a $tag$ string: offset of its content, else 0
	at   pos // where it is in the host file (set by add)
}

// lexSQL splits src into tokens, dropping comments and whitespace. It
// knows the quoting of PostgreSQL (E”, $tag$…$tag$, nested /* */),
// MySQL (backticks, # comments at the start of a line) and SQLite, so
// that nothing inside a string or a comment is ever taken for code.
// backslash makes \ escape in ” strings, as MySQL does by default.
func lexSQL(src string, backslash bool) ([]sqlTok, int, string) {
	var toks []sqlTok
	cur := &cursor{src: src, line: 1, col: 1}
	adv := cur.adv
	lineStart := true // only blanks since the last newline
	for cur.i < len(src) {
		c := src[cur.i]
		off := cur.i
		first := lineStart
		lineStart = false
		switch {
		case c == '\n':
			lineStart = true
			adv(1)
		case c == ' ' || c == '\t' || c == '\r' || c == '\f':
			lineStart = first
			adv(1)
		case c == '-' && strings.HasPrefix(src[cur.i:], "--"), c == '#' && first:
			// PostgreSQL's # is an operator, written between operands;
			// at the start of a line it is MySQL's comment.
			for cur.i < len(src) && src[cur.i] != '\n' {
				adv(1)
			}
		case c == '/' && strings.HasPrefix(src[cur.i:], "/*"):
			depth := 0
			for {
				if cur.i >= len(src) {
					return nil, off, "unterminated /* comment"
				}
				if strings.HasPrefix(src[cur.i:], "/*") {
					depth++
					adv(2)
				} else if strings.HasPrefix(src[cur.i:], "*/") {
					depth--
					adv(2)
					if depth == 0 {
						break
					}
				} else {
					adv(1)
				}
			}
		case c == '\'':
			s, err := quoted(cur, '\'', backslash)
			if err != "" {
				return nil, off, err
			}
			toks = append(toks, sqlTok{kind: sqlStr, text: s, off: off})
		case (c == 'E' || c == 'e') && cur.i+1 < len(src) && src[cur.i+1] == '\'':
			adv(1)
			s, err := quoted(cur, '\'', true)
			if err != "" {
				return nil, off, err
			}
			toks = append(toks, sqlTok{kind: sqlStr, text: s, off: off})
		case c == '"' || c == '`':
			s, err := quoted(cur, c, false)
			if err != "" {
				return nil, off, err
			}
			toks = append(toks, sqlTok{kind: sqlIdent, text: s, off: off})
		case c == '$' && cur.i+1 < len(src) && src[cur.i+1] >= '0' && src[cur.i+1] <= '9':
			j := cur.i + 1
			for j < len(src) && src[j] >= '0' && src[j] <= '9' {
				j++
			}
			toks = append(toks, sqlTok{kind: sqlParam, text: src[cur.i:j], off: off})
			adv(j - cur.i)
		case c == '$':
			// $tag$ … $tag$ (PostgreSQL), else a lone $.
			j := cur.i + 1
			for j < len(src) && isWordByte(src[j]) {
				j++
			}
			if j < len(src) && src[j] == '$' {
				tag := src[cur.i : j+1]
				end := strings.Index(src[j+1:], tag)
				if end < 0 {
					return nil, off, "unterminated " + tag + " string"
				}
				body := src[j+1 : j+1+end]
				adv(j + 1 + end + len(tag) - cur.i)
				toks = append(toks, sqlTok{kind: sqlStr, text: body, off: off, body: j + 1})
				continue
			}
			toks = append(toks, sqlTok{kind: sqlPunct, text: "$", off: off})
			adv(1)
		case c == '?':
			toks = append(toks, sqlTok{kind: sqlParam, text: "?", off: off})
			adv(1)
		case c == '%' && cur.i+1 < len(src) && (src[cur.i+1] == 's' || src[cur.i+1] == '('):
			j := cur.i + 2
			if src[cur.i+1] == '(' {
				k := strings.IndexByte(src[cur.i:], ')')
				if k < 0 || cur.i+k+1 >= len(src) || src[cur.i+k+1] != 's' {
					toks = append(toks, sqlTok{kind: sqlPunct, text: "%", off: off})
					adv(1)
					continue
				}
				j = cur.i + k + 2
			}
			toks = append(toks, sqlTok{kind: sqlParam, text: src[cur.i:j], off: off})
			adv(j - cur.i)
		case c == ':' && cur.i+1 < len(src) && isWordStart(src[cur.i+1]) && (cur.i == 0 || src[cur.i-1] != ':'):
			j := cur.i + 1
			for j < len(src) && isWordByte(src[j]) {
				j++
			}
			toks = append(toks, sqlTok{kind: sqlParam, text: src[cur.i:j], off: off})
			adv(j - cur.i)
		case isWordStart(c):
			j := cur.i
			for j < len(src) && (isWordByte(src[j]) || src[j] == '$') {
				j++
			}
			toks = append(toks, sqlTok{kind: sqlWord, text: strings.ToUpper(src[cur.i:j]), off: off})
			adv(j - cur.i)
		case c >= '0' && c <= '9':
			j := cur.i
			for j < len(src) && (isWordByte(src[j]) || src[j] == '.') {
				j++
			}
			toks = append(toks, sqlTok{kind: sqlNum, text: src[cur.i:j], off: off})
			adv(j - cur.i)
		default:
			toks = append(toks, sqlTok{kind: sqlPunct, text: string(c), off: off})
			adv(1)
		}
	}
	return toks, 0, ""
}

// quoted reads a literal that starts at the cursor with q, where a doubled
// q stands for itself (and, with backslash, \ escapes the next byte).
func quoted(cur *cursor, q byte, backslash bool) (string, string) {
	src, adv := cur.src, cur.adv
	adv(1)
	var b strings.Builder
	for {
		if cur.i >= len(src) {
			return "", fmt.Sprintf("unterminated %c…%c literal", q, q)
		}
		c := src[cur.i]
		switch {
		case backslash && c == '\\' && cur.i+1 < len(src):
			b.WriteByte(src[cur.i+1])
			adv(2)
		case c == q && cur.i+1 < len(src) && src[cur.i+1] == q:
			b.WriteByte(q)
			adv(2)
		case c == q:
			adv(1)
			return b.String(), ""
		default:
			b.WriteByte(c)
			adv(1)
		}
	}
}

func isWordStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80
}

func isWordByte(c byte) bool { return isWordStart(c) || (c >= '0' && c <= '9') }

// piece is one part of a SQL text spread over a host file: a .sql file
// is one piece; in Python and Go, string literals joined by + or by
// adjacency are one piece each, their texts concatenated.
type piece struct {
	text  string
	start pos // where text's first byte is in the host file
}

func joined(ps []piece) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.text)
	}
	return b.String()
}

// pieceMap turns byte offsets in the concatenated text into host positions.
type pieceMap struct {
	pieces []piece
	offs   []int   // offset of each piece in the concatenation
	nls    [][]int // offsets of each piece's newlines, within it
}

func newPieceMap(ps []piece) (*pieceMap, string) {
	m := &pieceMap{pieces: ps}
	var b strings.Builder
	for _, p := range ps {
		m.offs = append(m.offs, b.Len())
		var nl []int
		for i := 0; i < len(p.text); i++ {
			if p.text[i] == '\n' {
				nl = append(nl, i)
			}
		}
		m.nls = append(m.nls, nl)
		b.WriteString(p.text)
	}
	return m, b.String()
}

func (m *pieceMap) at(off int) pos {
	k := sort.SearchInts(m.offs, off+1) - 1
	k = max(k, 0)
	r := off - m.offs[k]
	nl := m.nls[k]
	n := sort.SearchInts(nl, r) // newlines before r
	if n == 0 {
		return shift(pos{1, r + 1}, m.pieces[k].start)
	}
	return shift(pos{n + 1, r - nl[n-1]}, m.pieces[k].start)
}

// sqlScript lints statements in order; cleared holds the tables an
// earlier statement deleted from, truncated or created afresh, into which
// a later INSERT is a replacement, not a duplicate (the seed's
// delete-then-insert and truncate-then-insert patterns). One script is a
// .sql file, or all the SQL strings of one Python or Go file.
type sqlScript struct {
	path    string
	cleared []string // qualified names, lower-cased unless quoted
	out     []Finding
	m       *pieceMap // of the text being linted
}

func newSQLScript(path string) *sqlScript { return &sqlScript{path: path} }

func sqlFile(path, src string) ([]Finding, error) {
	s := newSQLScript(path)
	if err := s.add(piece{src, pos{1, 1}}); err != nil {
		err.Path = path
		return nil, err
	}
	return s.out, nil
}

// add lints one SQL text made of pieces. A text that does not lex with
// standard quoting is tried again with MySQL's backslash escapes.
func (s *sqlScript) add(ps ...piece) *SyntaxError {
	m, src := newPieceMap(ps)
	toks, off, msg := lexSQL(src, false)
	if msg != "" {
		var msg2 string
		if toks, _, msg2 = lexSQL(src, true); msg2 != "" {
			at := m.at(off)
			return &SyntaxError{Line: at.line, Col: at.col, Msg: msg}
		}
	}
	s.m = m
	s.lint(toks)
	return nil
}

// lint splits tokens into statements and lints each.
func (s *sqlScript) lint(toks []sqlTok) {
	for i := range toks {
		toks[i].at = s.m.at(toks[i].off)
	}
	depth, from := 0, 0
	for i, t := range toks {
		switch {
		case t.kind == sqlPunct && t.text == "(":
			depth++
		case t.kind == sqlPunct && t.text == ")":
			depth = max(depth-1, 0)
		case t.kind == sqlPunct && t.text == ";" && depth == 0:
			s.statement(toks[from:i])
			from = i + 1
		}
	}
	s.statement(toks[from:])
}

// body lints the code of a DO block or a function or procedure defined in
// $$ quotes (PL/pgSQL), whose statements write as any other.
func (s *sqlScript) body(t sqlTok) {
	inner, _, msg := lexSQL(t.text, false)
	if msg != "" {
		return
	}
	for i := range inner {
		inner[i].off += t.body
		if inner[i].body > 0 {
			inner[i].body += t.body
		}
	}
	s.lint(inner)
}

func (s *sqlScript) find(t sqlTok, r Rule, msg string) {
	s.out = append(s.out, Finding{Path: s.path, Line: t.at.line, Col: t.at.col, Rule: r, Message: msg})
}

func isWord(t sqlTok, words ...string) bool {
	if t.kind != sqlWord {
		return false
	}
	for _, w := range words {
		if t.text == w {
			return true
		}
	}
	return false
}

func isPunct(t sqlTok, p string) bool { return t.kind == sqlPunct && t.text == p }

// has reports whether the words occur in a row.
func has(toks []sqlTok, words ...string) bool {
	for i := 0; i+len(words) <= len(toks); i++ {
		ok := true
		for k, w := range words {
			if !isWord(toks[i+k], w) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// tableAt reads the (possibly qualified, quoted or {templated}) table
// name starting at toks[i]: its parts joined by ".", each lower-cased
// unless quoted.
func tableAt(toks []sqlTok, i int) string {
	var parts []string
	for i < len(toks) {
		t := toks[i]
		switch {
		case t.kind == sqlWord:
			parts = append(parts, strings.ToLower(t.text))
		case t.kind == sqlIdent:
			parts = append(parts, t.text)
		case isPunct(t, "{"):
			// A Python or Go template placeholder: {table}.
			var b strings.Builder
			for i++; i < len(toks) && !isPunct(toks[i], "}"); i++ {
				b.WriteString(toks[i].text)
			}
			parts = append(parts, "{"+strings.ToLower(b.String())+"}")
		default:
			return strings.Join(parts, ".")
		}
		if i+1 < len(toks) && isPunct(toks[i+1], ".") {
			i += 2
			continue
		}
		break
	}
	return strings.Join(parts, ".")
}

func (s *sqlScript) clear(name string) {
	if name != "" {
		s.cleared = append(s.cleared, name)
	}
}

// wasCleared: a cleared name matches when equal, or when one of the two
// is unqualified and the table parts agree (the schema is not known).
func (s *sqlScript) wasCleared(name string) bool {
	last := func(n string) (string, bool) {
		i := strings.LastIndexByte(n, '.')
		return n[i+1:], i >= 0
	}
	ln, lq := last(name)
	for _, c := range s.cleared {
		cn, cq := last(c)
		if c == name || (cn == ln && (!cq || !lq)) {
			return true
		}
	}
	return false
}

var nowWords = map[string]bool{"CURRENT_TIMESTAMP": true, "CURRENT_DATE": true, "CURRENT_TIME": true, "LOCALTIMESTAMP": true, "LOCALTIME": true, "SYSDATE": true}
var nowCalls = map[string]bool{"NOW": true, "GETDATE": true, "GETUTCDATE": true, "SYSDATETIME": true, "UTC_TIMESTAMP": true, "UTC_DATE": true,
	"TRANSACTION_TIMESTAMP": true, "STATEMENT_TIMESTAMP": true, "CLOCK_TIMESTAMP": true, "TIMEOFDAY": true}
var randomCalls = map[string]bool{"RANDOM": true, "RAND": true, "NEWID": true, "UUID": true, "GEN_RANDOM_UUID": true, "UUID_GENERATE_V1": true,
	"UUID_GENERATE_V4": true, "RANDOM_UUID": true, "RANDOMBLOB": true, "UUID_GENERATE_V1MC": true}

func (s *sqlScript) statement(toks []sqlTok) {
	if len(toks) == 0 {
		return
	}
	// In PL/pgSQL a statement may follow BEGIN, THEN, ELSE or LOOP.
	for i := 1; i < len(toks) && isWord(toks[0], "BEGIN", "IF", "ELSIF", "ELSE", "WHILE", "FOR", "LOOP", "DECLARE"); i++ {
		if isWord(toks[i-1], "BEGIN", "THEN", "ELSE", "LOOP") && isWord(toks[i], "INSERT", "UPDATE", "DELETE", "MERGE", "TRUNCATE", "COPY", "WITH") {
			toks = toks[i:]
			break
		}
	}
	verb, vi := toks[0], 0
	if isWord(verb, "WITH") {
		// The statement's verb follows the CTEs, at the outer level.
		depth := 0
		for i, t := range toks {
			if isPunct(t, "(") {
				depth++
			} else if isPunct(t, ")") {
				depth--
			} else if depth == 0 && i > 0 && isWord(t, "INSERT", "UPDATE", "DELETE", "MERGE", "SELECT") {
				verb, vi = t, i
				break
			}
		}
	}
	if isWord(verb, "DO") || (isWord(verb, "CREATE") && (indexWord(toks, vi, "FUNCTION") > 0 || indexWord(toks, vi, "PROCEDURE") > 0)) {
		for _, t := range toks {
			if t.kind == sqlStr && t.body > 0 {
				s.body(t)
			}
		}
		return
	}
	switch {
	case isWord(verb, "DELETE"):
		if i := indexWord(toks, vi, "FROM"); i > 0 {
			s.clear(tableAt(toks, i+1))
		}
	case isWord(verb, "TRUNCATE"):
		for i := vi + 1; i < len(toks); i++ {
			if isWord(toks[i], "TABLE", "ONLY") || isPunct(toks[i], ",") {
				continue
			}
			if toks[i].kind == sqlWord || toks[i].kind == sqlIdent || isPunct(toks[i], "{") {
				s.clear(tableAt(toks, i))
				for i+1 < len(toks) && !isPunct(toks[i+1], ",") {
					i++
				}
			}
		}
	case isWord(verb, "DROP") && len(toks) > vi+2 && isWord(toks[vi+1], "TABLE"):
		i := vi + 2
		if has(toks[i:min(i+2, len(toks))], "IF", "EXISTS") {
			i += 2
		}
		s.clear(tableAt(toks, i))
	case isWord(verb, "CREATE", "ALTER"):
		s.create(toks)
	case isWord(verb, "INSERT", "REPLACE", "UPSERT"):
		s.insert(toks, vi)
		s.values(toks)
	case isWord(verb, "UPDATE", "MERGE"):
		s.values(toks)
	case isWord(verb, "COPY"):
		if indexWord(toks, vi, "FROM") > 0 && !s.wasCleared(tableAt(toks, vi+1)) {
			s.find(verb, PlainInsert, "COPY … FROM appends: a retry loads the rows again; delete or truncate the table (or partition) first in the same transaction, or use idem load")
		}
	}
}

func indexWord(toks []sqlTok, from int, w string) int {
	for i := from; i < len(toks); i++ {
		if isWord(toks[i], w) {
			return i
		}
	}
	return -1
}

func (s *sqlScript) insert(toks []sqlTok, vi int) {
	verb := toks[vi]
	if isWord(verb, "REPLACE", "UPSERT") {
		return // MySQL's REPLACE and UPSERT overwrite by key
	}
	if vi+2 < len(toks) && isWord(toks[vi+1], "OR") && isWord(toks[vi+2], "IGNORE", "REPLACE") {
		return // SQLite's INSERT OR IGNORE/REPLACE
	}
	if vi+1 < len(toks) && isWord(toks[vi+1], "IGNORE") {
		return // MySQL's INSERT IGNORE
	}
	if has(toks, "ON", "CONFLICT") || has(toks, "ON", "DUPLICATE", "KEY") || has(toks, "NOT", "EXISTS") || has(toks, "EXCEPT") || antiJoinIn(toks) {
		return // an upsert, or an anti-join that inserts only what is missing
	}
	if i := indexWord(toks, vi, "INTO"); i > 0 && s.wasCleared(tableAt(toks, i+1)) {
		return
	}
	s.find(verb, PlainInsert, "INSERT without conflict handling: a retry inserts the rows again; use INSERT … ON CONFLICT (key) DO UPDATE/NOTHING, delete the partition first in the same transaction, or idem load --strategy upsert")
}

// antiJoinIn: NOT IN (SELECT …), which inserts only keys not there yet.
func antiJoinIn(toks []sqlTok) bool {
	for i := 0; i+3 < len(toks); i++ {
		if isWord(toks[i], "NOT") && isWord(toks[i+1], "IN") && isPunct(toks[i+2], "(") && isWord(toks[i+3], "SELECT") {
			return true
		}
	}
	return false
}

// inCallOf reports whether toks[i] sits in the argument list of a call
// to one of fns (e.g. SQLite's datetime('now')).
func inCallOf(toks []sqlTok, i int, fns ...string) bool {
	depth := 0
	for j := i - 1; j >= 0; j-- {
		switch {
		case isPunct(toks[j], ")"):
			depth++
		case isPunct(toks[j], "("):
			if depth == 0 {
				return j > 0 && isWord(toks[j-1], fns...)
			}
			depth--
		}
	}
	return false
}

// values flags runtime timestamps and random values in the parts of a
// statement that write data: not in an outer WHERE, which only filters,
// up to an ON CONFLICT or ON DUPLICATE KEY, whose SET writes again.
func (s *sqlScript) values(toks []sqlTok) {
	depth := 0
	filter := false
	for i, t := range toks {
		switch {
		case isPunct(t, "("):
			depth++
		case isPunct(t, ")"):
			depth--
		}
		if depth == 0 && isWord(t, "WHERE") {
			filter = true
		}
		if depth == 0 && isWord(t, "ON") && i+1 < len(toks) && isWord(toks[i+1], "CONFLICT", "DUPLICATE") {
			filter = false
		}
		if filter {
			continue
		}
		call := i+1 < len(toks) && isPunct(toks[i+1], "(")
		prev := i > 0 && isPunct(toks[i-1], ".")
		switch {
		case t.kind == sqlWord && !prev && (nowWords[t.text] || (call && nowCalls[t.text])):
			s.find(t, NowInData, fmt.Sprintf("%s in written data: a retry or backfill writes another time; pass the execution date as a parameter", t.text))
		case t.kind == sqlStr && strings.EqualFold(t.text, "now") && inCallOf(toks, i, "DATETIME", "DATE", "TIME", "JULIANDAY", "STRFTIME", "UNIXEPOCH"):
			s.find(t, NowInData, "SQLite's 'now' in written data: a retry or backfill writes another time; pass the execution date as a parameter")
		case t.kind == sqlWord && !prev && call && randomCalls[t.text]:
			s.find(t, RandomValue, fmt.Sprintf("%s() in written data: a retry writes another value; derive it from the row's key (e.g. a hash)", t.text))
		}
	}
}

// create flags auto-increment keys in CREATE TABLE and ALTER TABLE.
func (s *sqlScript) create(toks []sqlTok) {
	if ti := indexWord(toks, 0, "TABLE"); ti > 0 {
		// A table created afresh starts empty: inserts into it later in
		// the script cannot duplicate (not so with IF NOT EXISTS).
		if isWord(toks[0], "CREATE") && !has(toks[:min(ti+4, len(toks))], "IF", "NOT", "EXISTS") {
			s.clear(tableAt(toks, ti+1))
		}
		if has(toks, "AS", "SELECT") {
			s.values(toks)
		}
	}
	for i, t := range toks {
		if t.kind != sqlWord {
			continue
		}
		switch t.text {
		case "SERIAL", "BIGSERIAL", "SMALLSERIAL", "SERIAL4", "SERIAL8", "SERIAL2":
			// A type only right after a column name: "serial TEXT" is a
			// column named serial.
			if i < 2 || (toks[i-1].kind != sqlWord && toks[i-1].kind != sqlIdent) || !(isPunct(toks[i-2], "(") || isPunct(toks[i-2], ",") || isWord(toks[i-2], "COLUMN", "ADD")) {
				continue
			}
		case "AUTO_INCREMENT", "AUTOINCREMENT":
		case "IDENTITY":
			if i > 0 && isWord(toks[i-1], "OFF", "ON", "DROP") {
				continue
			}
		default:
			continue
		}
		s.find(t, AutoIncrementKey, fmt.Sprintf("%s key: a retried load gives the same row another id; key the table by its natural (business) key", t.text))
	}
}
