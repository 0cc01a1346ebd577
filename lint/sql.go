package lint

import (
	"fmt"
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
	at   pos
}

// lexSQL splits src into tokens, dropping comments and whitespace. It
// knows the quoting of PostgreSQL (E”, $tag$…$tag$, nested /* */),
// MySQL (backticks) and SQLite, so that nothing inside a string or a
// comment is ever taken for code.
func lexSQL(src string) ([]sqlTok, *SyntaxError) {
	var toks []sqlTok
	cur := &cursor{src: src, line: 1, col: 1}
	adv := cur.adv
	fail := func(at pos, msg string) *SyntaxError { return &SyntaxError{Line: at.line, Col: at.col, Msg: msg} }
	for cur.i < len(src) {
		c := src[cur.i]
		at := pos{cur.line, cur.col}
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			adv(1)
		case c == '-' && strings.HasPrefix(src[cur.i:], "--"):
			for cur.i < len(src) && src[cur.i] != '\n' {
				adv(1)
			}
		case c == '/' && strings.HasPrefix(src[cur.i:], "/*"):
			depth := 0
			for {
				if cur.i >= len(src) {
					return nil, fail(at, "unterminated /* comment")
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
			s, err := quoted(cur, '\'', false)
			if err != "" {
				return nil, fail(at, err)
			}
			toks = append(toks, sqlTok{sqlStr, s, at})
		case (c == 'E' || c == 'e') && cur.i+1 < len(src) && src[cur.i+1] == '\'':
			adv(1)
			s, err := quoted(cur, '\'', true)
			if err != "" {
				return nil, fail(at, err)
			}
			toks = append(toks, sqlTok{sqlStr, s, at})
		case c == '"' || c == '`':
			s, err := quoted(cur, c, false)
			if err != "" {
				return nil, fail(at, err)
			}
			toks = append(toks, sqlTok{sqlIdent, s, at})
		case c == '$' && cur.i+1 < len(src) && src[cur.i+1] >= '0' && src[cur.i+1] <= '9':
			j := cur.i + 1
			for j < len(src) && src[j] >= '0' && src[j] <= '9' {
				j++
			}
			toks = append(toks, sqlTok{sqlParam, src[cur.i:j], at})
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
					return nil, fail(at, "unterminated "+tag+" string")
				}
				body := src[j+1 : j+1+end]
				adv(j + 1 + end + len(tag) - cur.i)
				toks = append(toks, sqlTok{sqlStr, body, at})
				continue
			}
			toks = append(toks, sqlTok{sqlPunct, "$", at})
			adv(1)
		case c == '?':
			toks = append(toks, sqlTok{sqlParam, "?", at})
			adv(1)
		case c == '%' && cur.i+1 < len(src) && (src[cur.i+1] == 's' || src[cur.i+1] == '('):
			j := cur.i + 2
			if src[cur.i+1] == '(' {
				k := strings.IndexByte(src[cur.i:], ')')
				if k < 0 || cur.i+k+1 >= len(src) || src[cur.i+k+1] != 's' {
					toks = append(toks, sqlTok{sqlPunct, "%", at})
					adv(1)
					continue
				}
				j = cur.i + k + 2
			}
			toks = append(toks, sqlTok{sqlParam, src[cur.i:j], at})
			adv(j - cur.i)
		case c == ':' && cur.i+1 < len(src) && isWordStart(src[cur.i+1]) && (cur.i == 0 || src[cur.i-1] != ':'):
			j := cur.i + 1
			for j < len(src) && isWordByte(src[j]) {
				j++
			}
			toks = append(toks, sqlTok{sqlParam, src[cur.i:j], at})
			adv(j - cur.i)
		case isWordStart(c):
			j := cur.i
			for j < len(src) && (isWordByte(src[j]) || src[j] == '$') {
				j++
			}
			toks = append(toks, sqlTok{sqlWord, strings.ToUpper(src[cur.i:j]), at})
			adv(j - cur.i)
		case c >= '0' && c <= '9':
			j := cur.i
			for j < len(src) && (isWordByte(src[j]) || src[j] == '.') {
				j++
			}
			toks = append(toks, sqlTok{sqlNum, src[cur.i:j], at})
			adv(j - cur.i)
		default:
			toks = append(toks, sqlTok{sqlPunct, string(c), at})
			adv(1)
		}
	}
	return toks, nil
}

// quoted reads a literal that starts at the cursor with q, where a doubled q
// stands for itself (and, for E” strings, a backslash escapes).
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

// sqlScript lints statements in order; cleared holds the tables an
// earlier statement deleted from, truncated or created afresh, into which
// a later INSERT is a replacement, not a duplicate (the seed's
// delete-then-insert and truncate-then-insert patterns). One script is a
// .sql file, or all the SQL strings of one Python or Go file.
type sqlScript struct {
	path    string
	cleared map[string]bool
	out     []Finding
}

func newSQLScript(path string) *sqlScript { return &sqlScript{path: path, cleared: map[string]bool{}} }

func sqlFile(path, src string) ([]Finding, error) {
	s := newSQLScript(path)
	if err := s.add(src, pos{1, 1}); err != nil {
		err.Path = path
		return nil, err
	}
	return s.out, nil
}

// add lints src, whose first byte sits at start in the host file.
func (s *sqlScript) add(src string, start pos) *SyntaxError {
	toks, err := lexSQL(src)
	if err != nil {
		at := shift(pos{err.Line, err.Col}, start)
		err.Line, err.Col = at.line, at.col
		return err
	}
	for i := range toks {
		toks[i].at = shift(toks[i].at, start)
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
	return nil
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
// name starting at toks[i]; the last part, lower-cased unless quoted.
func tableAt(toks []sqlTok, i int) string {
	name := ""
	for i < len(toks) {
		t := toks[i]
		switch {
		case t.kind == sqlWord:
			name = strings.ToLower(t.text)
		case t.kind == sqlIdent:
			name = t.text
		case t.kind == sqlPunct && t.text == "{":
			// A Python or Go template placeholder: {table}.
			var b strings.Builder
			for i++; i < len(toks) && !(toks[i].kind == sqlPunct && toks[i].text == "}"); i++ {
				b.WriteString(toks[i].text)
			}
			name = "{" + strings.ToLower(b.String()) + "}"
		default:
			return name
		}
		if i+1 < len(toks) && toks[i+1].kind == sqlPunct && toks[i+1].text == "." {
			i += 2
			continue
		}
		return name
	}
	return name
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
	verb, vi := toks[0], 0
	if isWord(verb, "WITH") {
		// The statement's verb follows the CTEs, at the outer level.
		depth := 0
		for i, t := range toks {
			if t.kind == sqlPunct && t.text == "(" {
				depth++
			} else if t.kind == sqlPunct && t.text == ")" {
				depth--
			} else if depth == 0 && i > 0 && isWord(t, "INSERT", "UPDATE", "DELETE", "MERGE", "SELECT") {
				verb, vi = t, i
				break
			}
		}
	}
	switch {
	case isWord(verb, "DELETE"):
		if i := indexWord(toks, vi, "FROM"); i > 0 {
			s.cleared[tableAt(toks, i+1)] = true
		}
	case isWord(verb, "TRUNCATE"):
		for i := vi + 1; i < len(toks); i++ {
			if isWord(toks[i], "TABLE", "ONLY") || (toks[i].kind == sqlPunct && toks[i].text == ",") {
				continue
			}
			if toks[i].kind == sqlWord || toks[i].kind == sqlIdent || (toks[i].kind == sqlPunct && toks[i].text == "{") {
				s.cleared[tableAt(toks, i)] = true
				for i+1 < len(toks) && !(toks[i+1].kind == sqlPunct && toks[i+1].text == ",") {
					i++
				}
			}
		}
	case isWord(verb, "DROP") && len(toks) > vi+2 && isWord(toks[vi+1], "TABLE"):
		i := vi + 2
		if has(toks[i:min(i+2, len(toks))], "IF", "EXISTS") {
			i += 2
		}
		s.cleared[tableAt(toks, i)] = true
	case isWord(verb, "CREATE", "ALTER"):
		s.create(toks)
	case isWord(verb, "INSERT", "REPLACE", "UPSERT"):
		s.insert(toks, vi)
		s.values(toks)
	case isWord(verb, "UPDATE", "MERGE"):
		s.values(toks)
	case isWord(verb, "COPY"):
		if indexWord(toks, vi, "FROM") > 0 && !s.cleared[tableAt(toks, vi+1)] {
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
	if vi+1 < len(toks) && isWord(toks[vi+1], "OR", "IGNORE") {
		return // SQLite's INSERT OR IGNORE/REPLACE, MySQL's INSERT IGNORE
	}
	if has(toks, "ON", "CONFLICT") || has(toks, "ON", "DUPLICATE", "KEY") || has(toks, "NOT", "EXISTS") || has(toks, "EXCEPT") || has(toks, "NOT", "IN") {
		return // an upsert, or an anti-join that inserts only what is missing
	}
	if i := indexWord(toks, vi, "INTO"); i > 0 && s.cleared[tableAt(toks, i+1)] {
		return
	}
	s.find(verb, PlainInsert, "INSERT without conflict handling: a retry inserts the rows again; use INSERT … ON CONFLICT (key) DO UPDATE/NOTHING, delete the partition first in the same transaction, or idem load --strategy upsert")
}

// values flags runtime timestamps and random values in a statement that
// writes data.
func (s *sqlScript) values(toks []sqlTok) {
	for i, t := range toks {
		call := i+1 < len(toks) && toks[i+1].kind == sqlPunct && toks[i+1].text == "("
		prev := i > 0 && toks[i-1].kind == sqlPunct && toks[i-1].text == "."
		switch {
		case t.kind == sqlWord && !prev && (nowWords[t.text] || (call && nowCalls[t.text])):
			s.find(t, NowInData, fmt.Sprintf("%s in written data: a retry or backfill writes another time; pass the execution date as a parameter", t.text))
		case t.kind == sqlStr && strings.EqualFold(t.text, "now") && i >= 2 && toks[i-1].text == "(" && isWord(toks[i-2], "DATETIME", "DATE", "TIME", "JULIANDAY", "STRFTIME", "UNIXEPOCH"):
			s.find(toks[i-2], NowInData, "SQLite's 'now' in written data: a retry or backfill writes another time; pass the execution date as a parameter")
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
			s.cleared[tableAt(toks, ti+1)] = true
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
		case "SERIAL", "BIGSERIAL", "SMALLSERIAL", "SERIAL4", "SERIAL8", "SERIAL2", "AUTO_INCREMENT", "AUTOINCREMENT":
		case "IDENTITY":
			if i > 0 && isWord(toks[i-1], "OFF", "ON") {
				continue
			}
		default:
			continue
		}
		s.find(t, AutoIncrementKey, fmt.Sprintf("%s key: a retried load gives the same row another id; key the table by its natural (business) key", t.text))
	}
}
