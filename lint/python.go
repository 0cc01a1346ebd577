package lint

import (
	"strings"
)

type pyKind int

const (
	pyName pyKind = iota
	pyStr
	pyNum
	pyOp
)

type pyTok struct {
	kind   pyKind
	text   string // a string's raw content, without prefix and quotes
	prefix string // a string's prefix, lower-cased (f, r, b, rb, …)
	at     pos
	body   pos // where a string's content starts
	line   int // index of its logical line
}

// pyLine is one logical line: its first token and indentation.
type pyLine struct {
	first, indent int
}

// lexPython splits Python source into tokens and logical lines. Comments
// are dropped; a newline inside brackets or after a backslash continues
// the logical line, as in Python's own tokenizer.
func lexPython(src string) ([]pyTok, []pyLine, *SyntaxError) {
	var toks []pyTok
	var lines []pyLine
	cur := &cursor{src: src, line: 1, col: 1}
	adv := cur.adv
	depth := 0
	startLine := true
	emit := func(t pyTok) {
		if startLine {
			lines = append(lines, pyLine{first: len(toks), indent: t.at.col - 1})
			startLine = false
		}
		t.line = len(lines) - 1
		toks = append(toks, t)
	}
	for cur.i < len(src) {
		c := src[cur.i]
		at := pos{cur.line, cur.col}
		switch {
		case c == '\n':
			if depth == 0 {
				startLine = true
			}
			adv(1)
		case c == ' ' || c == '\t' || c == '\r' || c == '\f':
			adv(1)
		case c == '#':
			for cur.i < len(src) && src[cur.i] != '\n' {
				adv(1)
			}
		case c == '\\' && cur.i+1 < len(src) && (src[cur.i+1] == '\n' || src[cur.i+1] == '\r'):
			adv(2)
			if cur.i < len(src) && src[cur.i-1] == '\r' && src[cur.i] == '\n' {
				adv(1)
			}
		case isWordStart(c):
			j := cur.i
			for j < len(src) && isWordByte(src[j]) {
				j++
			}
			word := src[cur.i:j]
			if j < len(src) && (src[j] == '\'' || src[j] == '"') && len(word) <= 2 && strings.Trim(strings.ToLower(word), "rbuf") == "" {
				adv(j - cur.i)
				t, err := pyString(cur, strings.ToLower(word), at)
				if err != nil {
					return nil, nil, err
				}
				emit(t)
				continue
			}
			emit(pyTok{kind: pyName, text: word, at: at})
			adv(j - cur.i)
		case c == '\'' || c == '"':
			t, err := pyString(cur, "", at)
			if err != nil {
				return nil, nil, err
			}
			emit(t)
		case c >= '0' && c <= '9':
			j := cur.i
			for j < len(src) && (isWordByte(src[j]) || src[j] == '.') {
				j++
			}
			emit(pyTok{kind: pyNum, text: src[cur.i:j], at: at})
			adv(j - cur.i)
		default:
			switch c {
			case '(', '[', '{':
				depth++
			case ')', ']', '}':
				depth = max(depth-1, 0)
			}
			op := string(c)
			if c == '=' && cur.i+1 < len(src) && src[cur.i+1] == '=' {
				op = "=="
			}
			emit(pyTok{kind: pyOp, text: op, at: at})
			adv(len(op))
		}
	}
	return toks, lines, nil
}

// pyString reads a string literal whose quote is at the cursor.
func pyString(cur *cursor, prefix string, at pos) (pyTok, *SyntaxError) {
	src, adv := cur.src, cur.adv
	q := src[cur.i]
	triple := strings.HasPrefix(src[cur.i:], strings.Repeat(string(q), 3))
	n := 1
	if triple {
		n = 3
	}
	adv(n)
	body := pos{cur.line, cur.col}
	start := cur.i
	for {
		if cur.i >= len(src) || (!triple && src[cur.i] == '\n') {
			return pyTok{}, &SyntaxError{Line: at.line, Col: at.col, Msg: "unterminated string literal"}
		}
		c := src[cur.i]
		if c == '\\' && cur.i+1 < len(src) {
			adv(2)
			continue
		}
		if c == q && (!triple || strings.HasPrefix(src[cur.i:], strings.Repeat(string(q), 3))) {
			t := pyTok{kind: pyStr, text: src[start:cur.i], prefix: prefix, at: at, body: body}
			adv(n)
			return t, nil
		}
		adv(1)
	}
}

type pyFile struct {
	path  string
	toks  []pyTok
	lines []pyLine
	out   []Finding
}

func pythonFile(path, src string) ([]Finding, error) {
	toks, lines, err := lexPython(src)
	if err != nil {
		err.Path = path
		return nil, err
	}
	f := &pyFile{path: path, toks: toks, lines: lines}
	sql := newSQLScript(path)
	seeded := false
	for i, t := range toks {
		if t.kind == pyName && t.text == "seed" && f.is(i+1, "(") {
			seeded = true
		}
	}
	for i, t := range toks {
		switch {
		case t.kind == pyStr && !strings.Contains(t.prefix, "b") && looksLikeSQL(t.text):
			// SQL in a string: linted as SQL, in the file's order. One
			// that does not lex (built from pieces) is left alone.
			_ = sql.add(t.text, t.body)
		case t.kind == pyName && f.is(i+1, "(") && !f.is(i-1, "@") && !(i > 0 && toks[i-1].kind == pyName && toks[i-1].text == "def"):
			f.call(i, seeded)
		}
	}
	return append(f.out, sql.out...), nil
}

func (f *pyFile) is(i int, op string) bool {
	return i >= 0 && i < len(f.toks) && f.toks[i].kind == pyOp && f.toks[i].text == op
}

func (f *pyFile) find(t pyTok, r Rule, msg string) {
	f.out = append(f.out, Finding{Path: f.path, Line: t.at.line, Col: t.at.col, Rule: r, Message: msg})
}

// dotted is the name called at toks[i] with the names before it:
// pd.Timestamp.now -> [pd Timestamp now].
func (f *pyFile) dotted(i int) []string {
	names := []string{f.toks[i].text}
	for i >= 2 && f.is(i-1, ".") && f.toks[i-2].kind == pyName {
		i -= 2
		names = append([]string{f.toks[i].text}, names...)
	}
	return names
}

// pyArg is one argument of a call: its keyword (or "") and tokens.
type pyArg struct {
	kw   string
	toks []pyTok
}

// args splits the call whose "(" is at toks[open] into its arguments.
func (f *pyFile) args(open int) []pyArg {
	var out []pyArg
	depth, cur := 0, pyArg{}
	for i := open + 1; i < len(f.toks); i++ {
		t := f.toks[i]
		if t.kind == pyOp {
			switch t.text {
			case "(", "[", "{":
				depth++
			case ")", "]", "}":
				if depth == 0 {
					if len(cur.toks) > 0 || cur.kw != "" {
						out = append(out, cur)
					}
					return out
				}
				depth--
			case ",":
				if depth == 0 {
					out = append(out, cur)
					cur = pyArg{}
					continue
				}
			case "=":
				if depth == 0 && len(cur.toks) == 1 && cur.toks[0].kind == pyName && cur.kw == "" {
					cur = pyArg{kw: cur.toks[0].text}
					continue
				}
			}
		}
		cur.toks = append(cur.toks, t)
	}
	return out
}

func (a pyArg) str() (string, bool) {
	if len(a.toks) == 1 && a.toks[0].kind == pyStr {
		return a.toks[0].text, true
	}
	return "", false
}

func kwStr(args []pyArg, kw string) (string, bool) {
	for _, a := range args {
		if a.kw == kw {
			return a.str()
		}
	}
	return "", false
}

func positional(args []pyArg, n int) (pyArg, bool) {
	k := 0
	for _, a := range args {
		if a.kw != "" {
			continue
		}
		if k == n {
			return a, true
		}
		k++
	}
	return pyArg{}, false
}

// scope is the token range of the def (or module) holding toks[i].
func (f *pyFile) scope(i int) []pyTok {
	ln := f.toks[i].line
	ind := f.lines[ln].indent
	for l := ln; l >= 0; l-- {
		first := f.lines[l].first
		t := f.toks[first]
		isDef := t.kind == pyName && (t.text == "def" || (t.text == "async" && first+1 < len(f.toks) && f.toks[first+1].text == "def"))
		if !isDef || f.lines[l].indent >= ind {
			continue
		}
		end := len(f.toks)
		for m := l + 1; m < len(f.lines); m++ {
			if f.lines[m].indent <= f.lines[l].indent {
				end = f.lines[m].first
				break
			}
		}
		return f.toks[first:end]
	}
	// Module level: the call's statement and the few before it, not the
	// whole file, whose other calls may set up their own keys.
	from := f.lines[max(ln-moduleLines, 0)].first
	end := len(f.toks)
	if ln+1 < len(f.lines) {
		end = f.lines[ln+1].first
	}
	return f.toks[from:end]
}

// moduleLines is how many logical lines before a module-level call count
// as its scope.
const moduleLines = 5

func mentions(toks []pyTok, needles ...string) bool {
	for _, t := range toks {
		if t.kind != pyName && t.kind != pyStr {
			continue
		}
		s := strings.ToLower(t.text)
		for _, n := range needles {
			if strings.Contains(s, n) {
				return true
			}
		}
	}
	return false
}

var pyNowFrom = map[string]bool{"datetime": true, "date": true, "Timestamp": true, "pendulum": true, "arrow": true, "DateTime": true}
var pyRandom = map[string]bool{"random": true, "randint": true, "uniform": true, "choice": true, "choices": true, "shuffle": true, "sample": true,
	"randrange": true, "getrandbits": true, "rand": true, "randn": true, "normal": true, "integers": true}
var pySends = map[string]bool{"sendmail": true, "send_message": true, "send_email": true, "send_raw_email": true, "send_templated_email": true,
	"send_bulk_templated_email": true, "chat_postMessage": true}
var pyGuards = []string{"idempot", "already_sent", "sent_at", "is_sent", "mark_sent", "was_sent", "sent_flag", "dedup", "once"}
var pyExec = map[string]bool{"execute": true, "executemany": true, "exec_driver_sql": true, "read_sql": true, "read_sql_query": true, "executescript": true}

func (f *pyFile) call(i int, seeded bool) {
	name := f.dotted(i)
	last := name[len(name)-1]
	prev := ""
	if len(name) > 1 {
		prev = name[len(name)-2]
	}
	t := f.toks[i]
	args := f.args(i + 1)
	switch {
	case (last == "now" || last == "utcnow" || last == "today") && pyNowFrom[prev]:
		f.find(t, NowInData, strings.Join(name, ".")+"(): a retry or backfill gets another time; pass the execution date (Airflow's {{ ds }}) as a parameter")
	case prev == "random" && pyRandom[last] && !seeded:
		f.find(t, RandomValue, strings.Join(name, ".")+"(): a retry gets another value; seed the generator or derive the value from the row")
	case last == "uuid4" || last == "uuid1":
		f.find(t, RandomValue, strings.Join(name, ".")+"(): a retry gets another id; use uuid5 over the row's key, or the key itself")
	case last == "open":
		// open(path, mode) or path.open(mode)
		n := 1
		if f.is(i-1, ".") && prev != "io" && prev != "codecs" {
			n = 0 // path.open(mode)
		}
		mode, ok := kwStr(args, "mode")
		if !ok {
			if a, has := positional(args, n); has {
				mode, ok = a.str()
			}
		}
		if ok && strings.Contains(mode, "a") {
			f.find(t, AppendWrite, "file opened in append mode ('"+mode+"'): a retry appends again; write a new file (temp + rename) for the run instead")
		}
	case last == "to_sql":
		if mode, ok := kwStr(args, "if_exists"); ok && mode == "append" {
			scope := f.scope(i)
			deleted := false
			for _, s := range scope {
				if s.kind == pyStr && startsWithAny(s.text, "DELETE", "TRUNCATE") || (s.kind == pyName && s.text == "delete") {
					deleted = true
				}
			}
			if !deleted {
				f.find(t, AppendNoDelete, "to_sql(if_exists='append') with no DELETE of the partition first: a retry appends the rows again; delete the partition in the same transaction, or use idem load --strategy replace-partition")
			}
		}
	case last == "mode" && prev != "" && len(args) == 1:
		if m, ok := args[0].str(); ok && strings.EqualFold(m, "append") {
			f.find(t, AppendWrite, ".mode('append'): a retry appends again; overwrite the partition (mode 'overwrite' with dynamic partition overwrite)")
		}
	case last == "insertInto":
		if v, ok := kwArg(args, "overwrite"); !ok || v != "True" {
			f.find(t, AppendWrite, "insertInto without overwrite=True appends: a retry appends again")
		}
	case last == "post" && (prev == "requests" || prev == "httpx" || strings.Contains(strings.ToLower(prev), "session")):
		f.keyed(i, args, strings.Join(name, "."))
	case last == "request" && (prev == "requests" || prev == "httpx" || strings.Contains(strings.ToLower(prev), "session")):
		if a, ok := positional(args, 0); ok {
			if m, ok := a.str(); ok && strings.EqualFold(m, "POST") {
				f.keyed(i, args, strings.Join(name, ".")+"('POST')")
			}
		}
	case pySends[last] || (last == "create" && prev == "messages"):
		if !mentions(f.scope(i), pyGuards...) && !mentionsExact(f.scope(i), "sent") {
			f.find(t, UnguardedSend, strings.Join(name, ".")+"(): no sent flag or idempotency key around it, so a retry sends again; record the send under a key first (idem once --key …)")
		}
	case pyExec[last] || (last == "text" && (prev == "sa" || prev == "sqlalchemy" || prev == "")):
		if a, ok := positional(args, 0); ok && f.formatted(a, last == "text") {
			f.find(t, SQLStringFormat, strings.Join(name, ".")+"() with SQL built by string formatting: bind values as parameters (execute(sql, params)) and quote identifiers")
		}
	default:
		// Any other call with mode='a' or mode='append' (pandas to_csv,
		// Spark's save and writers).
		if m, ok := kwStr(args, "mode"); ok && (m == "a" || m == "a+" || m == "ab" || strings.EqualFold(m, "append")) {
			f.find(t, AppendWrite, strings.Join(name, ".")+"(mode='"+m+"'): a retry appends again; overwrite the output (or its partition) instead")
		}
	}
}

// keyed flags a POST unless an Idempotency-Key is in sight.
func (f *pyFile) keyed(i int, args []pyArg, what string) {
	for _, a := range args {
		if mentions(a.toks, "idempotency-key", "idempot") {
			return
		}
	}
	if mentions(f.scope(i), "idempotency-key") {
		return
	}
	f.find(f.toks[i], PostWithoutKey, what+"() without an Idempotency-Key header: a retried call can create or charge twice; send headers={'Idempotency-Key': key} with a key derived from the business fields (idem key)")
}

// formatted reports whether a call's SQL argument is built by formatting:
// an f-string with fields, "…" % x, "…".format(…) or concatenation with
// something that is not a literal.
func (f *pyFile) formatted(a pyArg, needSQL bool) bool {
	ts := a.toks
	if len(ts) == 0 || ts[0].kind != pyStr {
		return false
	}
	if needSQL && !looksLikeSQL(ts[0].text) {
		return false
	}
	if strings.Contains(ts[0].prefix, "f") && strings.Contains(strings.ReplaceAll(ts[0].text, "{{", ""), "{") {
		return true
	}
	for k := 1; k < len(ts); k++ {
		t := ts[k]
		if t.kind == pyOp && t.text == "%" {
			return true
		}
		if t.kind == pyOp && t.text == "." && k+1 < len(ts) && ts[k+1].text == "format" {
			return true
		}
		if t.kind == pyOp && t.text == "+" {
			for _, o := range ts {
				if o.kind == pyName {
					return true
				}
			}
		}
	}
	return false
}

func kwArg(args []pyArg, kw string) (string, bool) {
	for _, a := range args {
		if a.kw == kw && len(a.toks) == 1 {
			return a.toks[0].text, true
		}
	}
	return "", false
}

func mentionsExact(toks []pyTok, name string) bool {
	for _, t := range toks {
		if t.kind == pyName && t.text == name {
			return true
		}
	}
	return false
}

var sqlVerbs = []string{"INSERT", "UPDATE", "DELETE", "TRUNCATE", "MERGE", "REPLACE", "CREATE", "COPY", "WITH", "DROP", "ALTER", "UPSERT", "SELECT"}

// looksLikeSQL: the text starts with a SQL verb and a space.
func looksLikeSQL(s string) bool { return startsWithAny(s, sqlVerbs...) }

func startsWithAny(s string, words ...string) bool {
	s = strings.TrimLeft(s, " \t\r\n(")
	for _, w := range words {
		if len(s) > len(w) && strings.EqualFold(s[:len(w)], w) {
			switch s[len(w)] {
			case ' ', '\t', '\n', '\r':
				return true
			}
		}
	}
	return false
}
