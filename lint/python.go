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
	match  int // for a bracket: the index of its partner
}

// pyLine is one logical line: its first token and indentation.
type pyLine struct {
	first, indent int
}

// lexPython splits Python source into tokens and logical lines, and pairs
// brackets. Comments are dropped; a newline inside brackets or after a
// backslash continues the logical line, as in Python's own tokenizer. A
// bracket never closed is a syntax error, as in Python.
func lexPython(src string) ([]pyTok, []pyLine, *SyntaxError) {
	var toks []pyTok
	var lines []pyLine
	var open []int // indexes of the brackets not yet closed
	cur := &cursor{src: src, line: 1, col: 1}
	adv := cur.adv
	startLine := true
	emit := func(t pyTok) {
		if startLine {
			lines = append(lines, pyLine{first: len(toks), indent: t.at.col - 1})
			startLine = false
		}
		t.line = len(lines) - 1
		t.match = -1
		toks = append(toks, t)
	}
	for cur.i < len(src) {
		c := src[cur.i]
		at := pos{cur.line, cur.col}
		switch {
		case c == '\n':
			if len(open) == 0 {
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
			op := string(c)
			if c == '=' && cur.i+1 < len(src) && src[cur.i+1] == '=' {
				op = "=="
			}
			emit(pyTok{kind: pyOp, text: op, at: at})
			switch c {
			case '(', '[', '{':
				open = append(open, len(toks)-1)
			case ')', ']', '}':
				if n := len(open); n > 0 {
					toks[open[n-1]].match, toks[len(toks)-1].match = len(toks)-1, open[n-1]
					open = open[:n-1]
				}
			}
			adv(len(op))
		}
	}
	if len(open) > 0 {
		t := toks[open[0]]
		return nil, nil, &SyntaxError{Line: t.at.line, Col: t.at.col, Msg: "'" + t.text + "' was never closed"}
	}
	return toks, lines, nil
}

// pyString reads a string literal whose quote is at the cursor. In an
// f-string, a quote inside {…} starts a nested string (Python 3.12 lets
// it reuse the outer quote), not the end.
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
	fstr := strings.Contains(prefix, "f")
	depth := 0
	for {
		if cur.i >= len(src) || (!triple && depth == 0 && src[cur.i] == '\n') {
			return pyTok{}, &SyntaxError{Line: at.line, Col: at.col, Msg: "unterminated string literal"}
		}
		c := src[cur.i]
		switch {
		case c == '\\' && cur.i+1 < len(src):
			adv(2)
			continue
		case fstr && c == '{' && depth == 0 && strings.HasPrefix(src[cur.i:], "{{"):
			adv(2)
			continue
		case fstr && c == '{':
			depth++
		case fstr && c == '}' && depth > 0:
			depth--
		case depth > 0 && (c == '\'' || c == '"'):
			// A string inside a replacement field: skip to its end.
			adv(1)
			for cur.i < len(src) && src[cur.i] != c && src[cur.i] != '\n' {
				adv(1)
			}
		case depth == 0 && c == q && (!triple || strings.HasPrefix(src[cur.i:], strings.Repeat(string(q), 3))):
			t := pyTok{kind: pyStr, text: src[start:cur.i], prefix: prefix, at: at, body: body}
			adv(n)
			return t, nil
		}
		adv(1)
	}
}

type pyFile struct {
	path    string
	toks    []pyTok
	lines   []pyLine
	out     []Finding
	clients map[string]bool // names bound to an HTTP client or its module
	posts   map[string]bool // names bound to requests.post and the like
}

var pyHTTPModules = map[string]bool{"requests": true, "httpx": true}
var pyClientTypes = map[string]bool{"Session": true, "Client": true, "AsyncClient": true, "ClientSession": true}

func pythonFile(path, src string) ([]Finding, error) {
	toks, lines, err := lexPython(src)
	if err != nil {
		err.Path = path
		return nil, err
	}
	f := &pyFile{path: path, toks: toks, lines: lines, clients: map[string]bool{"requests": true, "httpx": true}, posts: map[string]bool{}}
	f.bindings()
	sql := newSQLScript(path)
	seeded := false
	for i, t := range toks {
		if t.kind == pyName && t.text == "seed" && f.is(i+1, "(") {
			seeded = true
		}
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch {
		case t.kind == pyStr:
			// Adjacent literals, or literals joined by +, are one string.
			ps := []piece{{pyText(t), t.body}}
			j := i + 1
			for ; j < len(toks); j++ {
				if toks[j].kind == pyStr && toks[j].prefix == t.prefix {
					ps = append(ps, piece{pyText(toks[j]), toks[j].body})
				} else if !(f.is(j, "+") && j+1 < len(toks) && toks[j+1].kind == pyStr) {
					break
				}
			}
			if !strings.Contains(t.prefix, "b") && !f.bare(i, j) && looksLikeSQL(joined(ps)) {
				// SQL in a string, linted as SQL in the file's order; one
				// that does not lex (built from pieces) is left alone.
				_ = sql.add(ps...)
			}
			i = j - 1
		case t.kind == pyName && f.is(i+1, "(") && !(i > 0 && toks[i-1].kind == pyName && (toks[i-1].text == "def" || toks[i-1].text == "class")):
			if !f.decorator(i) {
				f.call(i, seeded)
			}
		}
	}
	return append(f.out, sql.out...), nil
}

// pyText is a string's source text for the SQL lexer: escapes blanked
// unless the string is raw.
func pyText(t pyTok) string {
	if strings.Contains(t.prefix, "r") {
		return t.text
	}
	return blankEscapes(t.text)
}

// bare: the strings toks[i:j] are a logical line of their own (a
// docstring, or a string statement): prose, not SQL.
func (f *pyFile) bare(i, j int) bool {
	l := f.toks[i].line
	return f.lines[l].first == i && (j == len(f.toks) || f.toks[j].line != l)
}

// decorator: the call at toks[i] is part of "@a.b(…)".
func (f *pyFile) decorator(i int) bool {
	for i >= 2 && f.is(i-1, ".") && f.toks[i-2].kind == pyName {
		i -= 2
	}
	return f.is(i-1, "@")
}

// bindings records import aliases and variables bound to HTTP clients:
// import requests as r; from requests import post; s = requests.Session();
// with httpx.Client() as c. Names are file-wide: a lexer sees no scopes
// finer than functions, and the same name for a client and something
// else in one file is rare.
func (f *pyFile) bindings() {
	t := f.toks
	for i := range t {
		switch {
		case t[i].kind == pyName && t[i].text == "import" && i+3 < len(t) && pyHTTPModules[t[i+1].text] && t[i+2].text == "as":
			f.clients[t[i+3].text] = true
		case t[i].kind == pyName && t[i].text == "from" && i+2 < len(t) && pyHTTPModules[t[i+1].text] && t[i+2].text == "import":
			for j := i + 3; j < len(t) && t[j].line == t[i].line; j++ {
				if t[j].kind == pyName && (t[j].text == "post" || t[j].text == "request") {
					name := t[j].text
					if j+2 < len(t) && t[j+1].text == "as" {
						name = t[j+2].text
					}
					f.posts[name] = true
				}
				if t[j].kind == pyName && pyClientTypes[t[j].text] {
					f.clients[t[j].text] = true // from httpx import Client
				}
			}
		case t[i].kind == pyName && pyClientTypes[t[i].text] && f.is(i+1, "("):
			// X = <client>(…) or with <client>(…) as X
			if m := t[i+1].match; m > 0 && m+2 < len(t) && t[m+1].text == "as" && t[m+2].kind == pyName {
				f.clients[t[m+2].text] = true
			}
			k := i
			for k >= 2 && f.is(k-1, ".") && t[k-2].kind == pyName {
				k -= 2
			}
			if k >= 2 && f.is(k-1, "=") && t[k-2].kind == pyName {
				f.clients[t[k-2].text] = true
			}
		}
	}
}

func (f *pyFile) is(i int, op string) bool {
	return i >= 0 && i < len(f.toks) && f.toks[i].kind == pyOp && f.toks[i].text == op
}

func (f *pyFile) find(t pyTok, r Rule, msg string) {
	f.out = append(f.out, Finding{Path: f.path, Line: t.at.line, Col: t.at.col, Rule: r, Message: msg})
}

// dotted is the name called at toks[i] with the names before it:
// pd.Timestamp.now -> [pd Timestamp now]. A call on a call's result
// (requests.Session().post) gives the inner call's name with "()".
func (f *pyFile) dotted(i int) []string {
	names := []string{f.toks[i].text}
	for i >= 2 && f.is(i-1, ".") {
		switch p := f.toks[i-2]; {
		case p.kind == pyName:
			i -= 2
			names = append([]string{p.text}, names...)
			continue
		case p.kind == pyOp && p.text == ")" && p.match > 0 && f.toks[p.match-1].kind == pyName:
			i = p.match - 1
			names = append([]string{f.toks[i].text + "()"}, names...)
			continue
		}
		break
	}
	return names
}

// pyArg is one argument of a call: its keyword (or "") and tokens.
type pyArg struct {
	kw   string
	toks []pyTok
}

// args splits the call whose "(" is at toks[open] into its arguments,
// each a slice of toks (nested brackets are jumped, not copied, so deep
// nesting stays linear).
func (f *pyFile) args(open int) []pyArg {
	var out []pyArg
	end := f.toks[open].match
	start := open + 1
	cut := func(i int) {
		if i <= start {
			return
		}
		a := pyArg{toks: f.toks[start:i]}
		if i-start >= 2 && a.toks[0].kind == pyName && a.toks[1].kind == pyOp && a.toks[1].text == "=" {
			a = pyArg{kw: a.toks[0].text, toks: a.toks[2:]}
		}
		out = append(out, a)
	}
	for i := open + 1; i < end; i++ {
		t := f.toks[i]
		switch {
		case t.kind == pyOp && t.match > i:
			i = t.match
		case t.kind == pyOp && t.text == ",":
			cut(i)
			start = i + 1
		}
	}
	cut(end)
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

func hasKw(args []pyArg, kws ...string) bool {
	for _, a := range args {
		for _, k := range kws {
			if a.kw == k {
				return true
			}
		}
	}
	return false
}

// scope is the token range of the def holding toks[i]: walking up, each
// line indented less than the lines seen so far opens a block, and the
// first such block that is a def is the one. At module level (no def),
// the call's statement and the few lines before it, not the whole file.
func (f *pyFile) scope(i int) []pyTok {
	ln := f.toks[i].line
	ind := f.lines[ln].indent
	for l := ln - 1; l >= 0 && ind > 0; l-- {
		if f.lines[l].indent >= ind {
			continue
		}
		ind = f.lines[l].indent
		first := f.lines[l].first
		t := f.toks[first]
		if !(t.kind == pyName && (t.text == "def" || (t.text == "async" && first+1 < len(f.toks) && f.toks[first+1].text == "def"))) {
			continue
		}
		end := len(f.toks)
		for m := l + 1; m < len(f.lines); m++ {
			if f.lines[m].indent <= ind {
				end = f.lines[m].first
				break
			}
		}
		return f.toks[first:end]
	}
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

// enclosingCall names the call whose arguments hold toks[i], or "".
func (f *pyFile) enclosingCall(i int) string {
	for j := i - 1; j >= 1; j-- {
		t := f.toks[j]
		if t.kind == pyOp && t.text == "(" && t.match > i {
			if f.toks[j-1].kind == pyName {
				return f.toks[j-1].text
			}
			return ""
		}
	}
	return ""
}

// notData: a clock or random value used for logging, waiting or timing
// (logging.info(…, datetime.now()), sleep(base + random.uniform(…)),
// datetime.now() - start), which is not written anywhere.
func (f *pyFile) notData(i, open int) bool {
	switch f.enclosingCall(i) {
	case "sleep", "debug", "info", "warning", "warn", "error", "exception", "critical", "log", "print", "timedelta":
		return true
	}
	start := i
	for start >= 2 && f.is(start-1, ".") && f.toks[start-2].kind == pyName {
		start -= 2
	}
	end := f.toks[open].match
	return f.is(start-1, "-") || f.is(end+1, "-")
}

var pyNowFrom = map[string]bool{"datetime": true, "date": true, "Timestamp": true, "pendulum": true, "arrow": true, "DateTime": true}
var pyRandom = map[string]bool{"random": true, "randint": true, "uniform": true, "choice": true, "choices": true, "shuffle": true, "sample": true,
	"randrange": true, "getrandbits": true, "rand": true, "randn": true, "normal": true, "integers": true}
var pySends = map[string]bool{"sendmail": true, "send_message": true, "send_email": true, "send_raw_email": true, "send_templated_email": true,
	"send_bulk_templated_email": true, "chat_postMessage": true}
var pyGuards = []string{"idempot", "already_sent", "sent_at", "is_sent", "mark_sent", "was_sent", "sent_flag", "dedup", "once"}
var pyExec = map[string]bool{"execute": true, "executemany": true, "exec_driver_sql": true, "read_sql": true, "read_sql_query": true, "executescript": true}

// fileMode: a string that is an open() mode (r, w, a, x, b, t, +, U).
func fileMode(s string) bool {
	return s != "" && strings.Trim(s, "rwxabt+U") == ""
}

func (f *pyFile) call(i int, seeded bool) {
	name := f.dotted(i)
	last := name[len(name)-1]
	prev := ""
	if len(name) > 1 {
		prev = name[len(name)-2]
	}
	method := f.is(i-1, ".")
	t := f.toks[i]
	args := f.args(i + 1)
	switch {
	case (last == "now" || last == "utcnow" || last == "today") && pyNowFrom[prev]:
		if !f.notData(i, i+1) {
			f.find(t, NowInData, strings.Join(name, ".")+"(): a retry or backfill gets another time; pass the execution date (Airflow's {{ ds }}) as a parameter")
		}
	case prev == "random" && pyRandom[last] && !seeded:
		if !f.notData(i, i+1) {
			f.find(t, RandomValue, strings.Join(name, ".")+"(): a retry gets another value; seed the generator or derive the value from the row")
		}
	case last == "uuid4" || last == "uuid1":
		f.find(t, RandomValue, strings.Join(name, ".")+"(): a retry gets another id; use uuid5 over the row's key, or the key itself")
	case last == "open":
		// open(path, mode), io.open(path, mode) or path.open(mode); a
		// mode is checked as a mode, so Image.open("x.png") is no file
		// opened for appending.
		n := 1
		if method && prev != "io" && prev != "codecs" && prev != "gzip" && prev != "bz2" && prev != "lzma" {
			n = 0
		}
		mode, ok := kwStr(args, "mode")
		if !ok {
			if a, has := positional(args, n); has {
				mode, ok = a.str()
			}
		}
		if ok && fileMode(mode) && strings.Contains(mode, "a") {
			f.find(t, AppendWrite, "file opened in append mode ('"+mode+"'): a retry appends again; write a new file (temp + rename) for the run instead")
		}
	case last == "to_sql":
		if mode, ok := kwStr(args, "if_exists"); ok && mode == "append" && !f.deletedBefore(i) {
			f.find(t, AppendNoDelete, "to_sql(if_exists='append') with no DELETE of the partition before it: a retry appends the rows again; delete the partition in the same transaction, or use idem load --strategy replace-partition")
		}
	case last == "mode" && method && len(args) == 1:
		if m, ok := args[0].str(); ok && strings.EqualFold(m, "append") {
			f.find(t, AppendWrite, ".mode('append'): a retry appends again; overwrite the partition (mode 'overwrite' with dynamic partition overwrite)")
		}
	case last == "insertInto" && method:
		v, ok := kwArg(args, "overwrite")
		if !ok {
			if a, has := positional(args, 1); has && len(a.toks) == 1 {
				v, ok = a.toks[0].text, true
			}
		}
		if !ok || v != "True" {
			f.find(t, AppendWrite, "insertInto without overwrite=True appends: a retry appends again")
		}
	case (last == "post" && (f.clients[prev] || strings.Contains(strings.ToLower(prev), "session") || isClientCall(prev))) || (len(name) == 1 && f.posts[last] && last != "request"):
		f.keyed(i, args, strings.Join(name, "."))
	case last == "request" && (f.clients[prev] || isClientCall(prev) || (len(name) == 1 && f.posts[last])):
		if a, ok := positional(args, 0); ok {
			if m, ok := a.str(); ok && strings.EqualFold(m, "POST") {
				f.keyed(i, args, strings.Join(name, ".")+"('POST')")
			}
		}
	case pySends[last] || (last == "create" && prev == "messages" && hasKw(args, "to", "from_")):
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

// isClientCall: requests.Session().post, httpx.Client().post.
func isClientCall(name string) bool {
	return pyClientTypes[strings.TrimSuffix(name, "()")] && strings.HasSuffix(name, "()")
}

// deletedBefore: the def holding toks[i] deletes or truncates before it.
func (f *pyFile) deletedBefore(i int) bool {
	for _, s := range f.scope(i) {
		if s.at.line > f.toks[i].at.line || (s.at.line == f.toks[i].at.line && s.at.col >= f.toks[i].at.col) {
			break
		}
		if (s.kind == pyStr && startsWithAny(s.text, "DELETE", "TRUNCATE")) || (s.kind == pyName && s.text == "delete") {
			return true
		}
	}
	return false
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
	for _, t := range ts {
		if t.kind == pyStr && strings.Contains(t.prefix, "f") && strings.Contains(strings.ReplaceAll(t.text, "{{", ""), "{") {
			return true
		}
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

// looksLikeSQL: the text starts as a SQL statement does, verb and the
// word after it ("INSERT INTO", "DELETE FROM", "CREATE TABLE", …), so
// prose ("Insert rows into the table") is not taken for SQL.
func looksLikeSQL(s string) bool {
	f := strings.Fields(strings.TrimLeft(s, " \t\r\n("))
	if len(f) < 2 {
		return false
	}
	verb, next := strings.ToUpper(f[0]), strings.ToUpper(f[1])
	switch verb {
	case "INSERT":
		// And rows to insert: prose says "insert into" too.
		u := strings.ToUpper(s)
		return (next == "INTO" || next == "OR" || next == "IGNORE") &&
			(strings.Contains(u, "VALUES") || strings.Contains(u, "SELECT") || strings.Contains(u, " SET ") || strings.Contains(u, "{"))
	case "DELETE":
		return next == "FROM"
	case "MERGE", "REPLACE":
		return next == "INTO"
	case "TRUNCATE":
		return true
	case "UPDATE", "COPY", "UPSERT":
		return strings.Contains(strings.ToUpper(s), " SET ") || verb == "COPY" && (strings.Contains(strings.ToUpper(s), " FROM ") || strings.Contains(strings.ToUpper(s), " TO "))
	case "CREATE", "DROP", "ALTER":
		switch next {
		case "TABLE", "TEMP", "TEMPORARY", "UNLOGGED", "OR", "GLOBAL", "LOCAL":
			return true
		}
	case "WITH":
		return len(f) > 2 && (strings.ToUpper(f[2]) == "AS" || strings.HasPrefix(strings.ToUpper(f[2]), "AS(") || strings.ToUpper(next) == "RECURSIVE")
	case "SELECT":
		return true
	}
	return false
}

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
