package lint

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/scanner"
	"go/token"
	"strings"
)

// goDB are the methods that send SQL (database/sql, pgx, sqlx).
var goDB = map[string]bool{"Exec": true, "ExecContext": true, "Query": true, "QueryContext": true, "QueryRow": true,
	"QueryRowContext": true, "Prepare": true, "PrepareContext": true, "MustExec": true, "NamedExec": true, "Get": true, "Select": true}

func goFile(path string, src []byte) ([]Finding, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, src, parser.SkipObjectResolution)
	if err != nil {
		e := &SyntaxError{Path: path, Line: 1, Col: 1, Msg: err.Error()}
		var list scanner.ErrorList
		if errors.As(err, &list) && len(list) > 0 {
			e.Line, e.Col, e.Msg = list[0].Pos.Line, list[0].Pos.Column, list[0].Msg
		}
		return nil, e
	}
	g := &goLint{path: path, fset: fset, consts: map[string]bool{}, sql: newSQLScript(path)}
	for _, d := range f.Decls {
		if gd, ok := d.(*ast.GenDecl); ok && gd.Tok == token.CONST {
			for _, s := range gd.Specs {
				for _, n := range s.(*ast.ValueSpec).Names {
					g.consts[n.Name] = true
				}
			}
		}
	}
	for _, d := range f.Decls {
		var scope ast.Node = f
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Body != nil {
			scope = fd.Body
		}
		ast.Inspect(d, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BinaryExpr:
				// "INSERT … " + "ON CONFLICT …": one SQL text; what is
				// not a literal stands in as {…}, as in a template.
				if n.Op == token.ADD {
					if ps := g.pieces(n); len(ps) > 0 && looksLikeSQL(joined(ps)) {
						_ = g.sql.add(ps...)
						return false
					}
				}
			case *ast.BasicLit:
				if text := goText(n); text != "" && looksLikeSQL(text) {
					_ = g.sql.add(piece{text, g.at(n.Pos() + 1)})
				}
			case *ast.CallExpr:
				g.call(n, scope)
			}
			return true
		})
	}
	return append(g.out, g.sql.out...), nil
}

type goLint struct {
	path   string
	fset   *token.FileSet
	consts map[string]bool
	sql    *sqlScript
	out    []Finding
}

// pieces flattens a + chain into its string literals, with {x} for each
// operand that is not one; nil when it holds no literal at all.
func (g *goLint) pieces(e ast.Expr) []piece {
	switch e := e.(type) {
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			break
		}
		l, r := g.pieces(e.X), g.pieces(e.Y)
		if l == nil && r == nil {
			return nil
		}
		return append(l, r...)
	case *ast.ParenExpr:
		return g.pieces(e.X)
	case *ast.BasicLit:
		if text := goText(e); text != "" {
			return []piece{{text, g.at(e.Pos() + 1)}}
		}
	}
	return []piece{{"{x}", g.at(e.Pos())}}
}

// goText is a string literal's content as it stands in the source, its
// escapes blanked (blankEscapes) unless it is a raw string.
func goText(l *ast.BasicLit) string {
	if l.Kind != token.STRING || len(l.Value) < 2 {
		return ""
	}
	text := l.Value[1 : len(l.Value)-1]
	if l.Value[0] == '"' {
		text = blankEscapes(text)
	}
	return text
}

func (g *goLint) at(p token.Pos) pos {
	q := g.fset.Position(p)
	return pos{q.Line, q.Column}
}

func (g *goLint) find(n ast.Node, r Rule, msg string) {
	p := g.at(n.Pos())
	g.out = append(g.out, Finding{Path: g.path, Line: p.line, Col: p.col, Rule: r, Message: msg})
}

// sel splits pkg.Name or x.Method into its parts ("" when not a selector).
func sel(e ast.Expr) (string, string) {
	s, ok := e.(*ast.SelectorExpr)
	if !ok {
		return "", ""
	}
	switch x := s.X.(type) {
	case *ast.Ident:
		return x.Name, s.Sel.Name
	case *ast.SelectorExpr:
		return x.Sel.Name, s.Sel.Name
	}
	return "?", s.Sel.Name
}

// mentionsGo reports whether the node holds an identifier or a string
// containing one of needles (lower-cased).
func mentionsGo(n ast.Node, needles ...string) bool {
	found := false
	ast.Inspect(n, func(n ast.Node) bool {
		var s string
		switch n := n.(type) {
		case *ast.Ident:
			s = n.Name
		case *ast.BasicLit:
			s = n.Value
		default:
			return !found
		}
		s = strings.ToLower(s)
		for _, w := range needles {
			if strings.Contains(s, w) {
				found = true
			}
		}
		return !found
	})
	return found
}

func (g *goLint) call(c *ast.CallExpr, scope ast.Node) {
	x, name := sel(c.Fun)
	switch {
	case name == "" || x == "":
	case goDB[name]:
		g.dbCall(c, name)
	case x == "os" && name == "OpenFile" && len(c.Args) >= 2 && mentionsGo(c.Args[1], "o_append"):
		g.find(c, AppendWrite, "os.OpenFile with O_APPEND: a retry appends again; write a new file (temp + rename) for the run instead")
	case (x == "http" && (name == "Post" || name == "PostForm")) || ((name == "Post" || name == "PostForm") && strings.Contains(strings.ToLower(x), "client")):
		g.keyed(c, scope, x+"."+name)
	case x == "http" && (name == "NewRequest" || name == "NewRequestWithContext"):
		i := 0
		if name == "NewRequestWithContext" {
			i = 1
		}
		if len(c.Args) > i && isPost(c.Args[i]) {
			g.keyed(c, scope, "http."+name+"(POST)")
		}
	case (x == "smtp" && name == "SendMail") || name == "SendEmail" || name == "SendRawEmail" || name == "SendTemplatedEmail":
		if !mentionsGo(scope, pyGuards...) && !mentionsGo(scope, "sent") {
			g.find(c, UnguardedSend, x+"."+name+": no sent flag or idempotency key around it, so a retry sends again; record the send under a key first (idem.Once, idem once --key …)")
		}
	}
}

func isPost(e ast.Expr) bool {
	if l, ok := e.(*ast.BasicLit); ok {
		return strings.EqualFold(strings.Trim(l.Value, "\"`"), "POST")
	}
	x, n := sel(e)
	return x == "http" && n == "MethodPost"
}

func (g *goLint) keyed(c *ast.CallExpr, scope ast.Node, what string) {
	if mentionsGo(scope, "idempotency-key") {
		return
	}
	g.find(c, PostWithoutKey, what+" without an Idempotency-Key header: a retried call can create or charge twice; set req.Header.Set(\"Idempotency-Key\", key) with a key derived from the business fields (idem.DeriveKey)")
}

// dbCall checks the SQL argument of a database call and the values bound
// with it.
func (g *goLint) dbCall(c *ast.CallExpr, name string) {
	if len(c.Args) == 0 {
		return
	}
	i := 0
	if strings.HasSuffix(name, "Context") || isCtx(c.Args[0]) {
		i = 1
	}
	if i >= len(c.Args) {
		return
	}
	// Get, Select, Query… are also cache and HTTP methods: only a first
	// literal that reads as SQL makes this a database call.
	text := g.leadingText(c.Args[i])
	if !startsWithAny(text, sqlVerbs...) {
		return
	}
	if g.formatted(c.Args[i]) {
		g.find(c.Args[i], SQLStringFormat, name+" with SQL built by string formatting: bind values as parameters ($1, ?) and quote identifiers")
	}
	if !startsWithAny(text, "INSERT", "UPDATE", "MERGE", "UPSERT", "REPLACE") {
		return // values bound into a read filter it, they are not written
	}
	for _, a := range c.Args[i+1:] {
		ast.Inspect(a, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			px, pn := sel(call.Fun)
			switch {
			case px == "time" && pn == "Now":
				g.find(call, NowInData, "time.Now() bound into a write: a retry or backfill writes another time; pass the execution date in")
			case (px == "uuid" && strings.HasPrefix(pn, "New")) || px == "rand":
				g.find(call, RandomValue, px+"."+pn+"() bound into a write: a retry writes another value; derive it from the row's key")
			}
			return true
		})
	}
}

// leadingText is the first string literal of a SQL argument: the literal
// itself, the format of fmt.Sprintf, or the first piece of a + chain.
func (g *goLint) leadingText(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind == token.STRING && len(e.Value) >= 2 {
			return e.Value[1 : len(e.Value)-1]
		}
	case *ast.CallExpr:
		if x, n := sel(e.Fun); x == "fmt" && strings.HasPrefix(n, "Sprint") && len(e.Args) > 0 {
			return g.leadingText(e.Args[0])
		}
	case *ast.BinaryExpr:
		return g.leadingText(e.X)
	case *ast.ParenExpr:
		return g.leadingText(e.X)
	}
	return ""
}

func isCtx(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name == "ctx" || strings.HasSuffix(e.Name, "Ctx")
	case *ast.CallExpr:
		x, _ := sel(e.Fun)
		return x == "context"
	}
	return false
}

// formatted: fmt.Sprintf(…) or a concatenation with something that is not
// a literal or a constant of this file.
func (g *goLint) formatted(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.CallExpr:
		x, n := sel(e.Fun)
		return x == "fmt" && strings.HasPrefix(n, "Sprint")
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return false
		}
		return g.variable(e.X) || g.variable(e.Y)
	case *ast.ParenExpr:
		return g.formatted(e.X)
	}
	return false
}

func (g *goLint) variable(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.BasicLit:
		return false
	case *ast.Ident:
		return !g.consts[e.Name]
	case *ast.BinaryExpr:
		return g.formatted(e)
	case *ast.ParenExpr:
		return g.variable(e.X)
	}
	return true
}
