package lint

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// at is "line:col rule" for each finding, the form the cases below use.
func at(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%d:%d %s", f.Line, f.Col, f.Rule))
	}
	return out
}

func check(t *testing.T, path, src string, want ...string) {
	t.Helper()
	fs, err := File(path, []byte(src))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if got := at(fs); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\n%s\ngot:\n  %s\nwant:\n  %s", path, src, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestSQL(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want []string
	}{
		{"INSERT INTO t VALUES (1);", []string{"1:1 plain-insert"}},
		{"insert into t select * from s", []string{"1:1 plain-insert"}},
		{"INSERT INTO t VALUES (1) ON CONFLICT (id) DO NOTHING;", nil},
		{"INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE v = 1;", nil},
		{"INSERT OR REPLACE INTO t VALUES (1); INSERT IGNORE INTO t VALUES (1); REPLACE INTO t VALUES (1);", nil},
		{"INSERT INTO t SELECT * FROM s WHERE NOT EXISTS (SELECT 1 FROM t WHERE t.id = s.id);", nil},
		// the seed's delete-then-insert and truncate-then-insert
		{"DELETE FROM t WHERE d = '2024-01-01';\nINSERT INTO t SELECT * FROM s;", nil},
		{"TRUNCATE TABLE a, public.b;\nINSERT INTO b SELECT 1; INSERT INTO a SELECT 1; INSERT INTO c SELECT 1;", []string{"2:49 plain-insert"}},
		{"CREATE TEMP TABLE s (id int);\nINSERT INTO s VALUES (1);", nil},
		{"CREATE TABLE IF NOT EXISTS s (id int);\nINSERT INTO s VALUES (1);", []string{"2:1 plain-insert"}},
		{"DROP TABLE IF EXISTS s; CREATE TABLE s AS SELECT 1; INSERT INTO s VALUES (2);", nil},
		{"INSERT INTO \"T\" VALUES (1); DELETE FROM t; INSERT INTO t VALUES (1);", []string{"1:1 plain-insert"}},
		// not code: strings, comments, dollar quotes
		{"SELECT 'INSERT INTO t VALUES (1)', $x$ INSERT INTO t $x$; -- INSERT INTO t\n/* INSERT /* nested */ INTO t */", nil},
		{"SELECT E'it\\'s INSERT INTO t';", nil},
		{"WITH s AS (SELECT 1) INSERT INTO t SELECT * FROM s;", []string{"1:22 plain-insert"}},
		{"COPY t FROM STDIN; COPY t TO STDOUT;", []string{"1:1 plain-insert"}},
		{"TRUNCATE t; COPY t FROM STDIN;", nil},
		// runtime values in written data, not in reads
		{"INSERT INTO t VALUES (1, now()) ON CONFLICT DO NOTHING;", []string{"1:26 now-in-data"}},
		{"UPDATE t SET at = CURRENT_TIMESTAMP, k = random();", []string{"1:19 now-in-data", "1:42 random-value"}},
		{"INSERT INTO t VALUES (datetime('now')) ON CONFLICT DO NOTHING;", []string{"1:32 now-in-data"}},
		{"SELECT now(), random(), CURRENT_DATE;", nil},
		{"INSERT INTO t (now) SELECT s.now FROM s ON CONFLICT DO NOTHING;", nil},
		// auto-increment keys
		{"CREATE TABLE t (id bigserial PRIMARY KEY);", []string{"1:20 auto-increment-key"}},
		{"CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT);", []string{"1:40 auto-increment-key"}},
		{"CREATE TABLE t (id int GENERATED ALWAYS AS IDENTITY);", []string{"1:44 auto-increment-key"}},
		{"CREATE TABLE t (id int PRIMARY KEY, serial_no text);", nil},
		{"CREATE TABLE", nil}, {"DROP TABLE", nil}, {"CREATE TABLE IF", nil}, {"TRUNCATE", nil}, {"DELETE FROM", nil}, {"INSERT INTO", []string{"1:1 plain-insert"}},
	} {
		check(t, "q.sql", tc.src, tc.want...)
	}
}

func TestPython(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want []string
	}{
		{"x = datetime.now()\ny = datetime.datetime.utcnow()\nz = date.today()\nw = pd.Timestamp.now()", []string{"1:14 now-in-data", "2:23 now-in-data", "3:10 now-in-data", "4:18 now-in-data"}},
		{"# datetime.now()\ns = 'datetime.now()'\nt = \"\"\"\ndatetime.now()\n\"\"\"\nu = time.time()", nil},
		{"v = random.randint(1, 6)\nu = uuid.uuid4()", []string{"1:12 random-value", "2:10 random-value"}},
		{"random.seed(42)\nv = random.randint(1, 6)", nil},
		{"f = open(p, 'a')\ng = open(p, mode='ab')\nh = open(p, 'w')\nPath(p).open('a')", []string{"1:5 append-write", "2:5 append-write", "4:9 append-write"}},
		{"df.to_csv(p, mode='a')\ndf.write.mode('append').parquet(p)\ndf.write.parquet(p, mode='overwrite')", []string{"1:4 append-write", "2:10 append-write"}},
		{"def f(df):\n    df.to_sql('t', con, if_exists='append')\n\ndef g(df):\n    con.execute('DELETE FROM t WHERE d = %s', (d,))\n    df.to_sql('t', con, if_exists='append')",
			[]string{"2:8 append-without-delete"}},
		{"t = session.post(url, headers=h)\nr = requests.post(url, json=b)\ns = requests.post(url, json=b, headers={'Idempotency-Key': k})\n@app.post('/x')\ndef h(): pass",
			[]string{"1:13 post-without-key", "2:14 post-without-key"}},
		{"def f():\n    h = {'Idempotency-Key': k}\n    return requests.post(url, headers=h)", nil},
		{"def f(u):\n    smtp.sendmail(a, u, m)\n\ndef g(u):\n    if u.sent:\n        return\n    smtp.sendmail(a, u, m)\n", []string{"2:10 unguarded-send"}},
		{"cur.execute(f\"SELECT * FROM t WHERE id = {i}\")\ncur.execute('SELECT %s' % x)\ncur.execute('SELECT {}'.format(x))\ncur.execute('SELECT ' + x)\ncur.execute('SELECT %s', (x,))\ncur.execute(f'SELECT 1')",
			[]string{"1:5 sql-string-format", "2:5 sql-string-format", "3:5 sql-string-format", "4:5 sql-string-format"}},
		// SQL in strings, positioned in the file
		{"q = \"\"\"\n  INSERT INTO t VALUES (%s)\n\"\"\"\ncur.execute(q, (1,))", []string{"2:3 plain-insert"}},
		{"cur.execute(\"TRUNCATE t\")\ncur.execute(\"INSERT INTO t VALUES (1)\")", nil},
		{"x = (1,\n     datetime.now())\nif a and \\\n   b: pass", []string{"2:15 now-in-data"}},
	} {
		check(t, "job.py", tc.src, tc.want...)
	}
}

func TestGo(t *testing.T) {
	const head = "package p\n\nimport (\n\t\"fmt\"\n\t\"net/http\"\n\t\"os\"\n\t\"time\"\n)\n\nconst tbl = \"t\"\n\n"
	for _, tc := range []struct {
		src  string
		want []string
	}{
		{"func f() { db.Exec(\"INSERT INTO t VALUES ($1, $2)\", 1, time.Now()) }", []string{"12:21 plain-insert", "12:56 now-in-data"}},
		{"func f() { db.ExecContext(ctx, \"INSERT INTO t VALUES ($1) ON CONFLICT DO NOTHING\", uuid.NewString()) }", []string{"12:84 random-value"}},
		{"func f(d string) { db.Exec(fmt.Sprintf(\"DELETE FROM t WHERE d = '%s'\", d)); db.Query(\"SELECT \" + tbl); db.Query(\"SELECT \" + d) }",
			[]string{"12:28 sql-string-format", "12:113 sql-string-format"}},
		{"func f() { os.OpenFile(\"x\", os.O_APPEND|os.O_CREATE, 0o644); os.OpenFile(\"y\", os.O_TRUNC, 0o644) }", []string{"12:12 append-write"}},
		{"func f() { http.Post(u, \"\", nil) }\nfunc g() { r, _ := http.NewRequest(http.MethodPost, u, nil); r.Header.Set(\"Idempotency-Key\", k) }\nfunc h() { http.NewRequest(\"POST\", u, nil) }",
			[]string{"12:12 post-without-key", "14:12 post-without-key"}},
		{"func f() { smtp.SendMail(a, nil, f, to, m) }\nfunc g() { if alreadySent(k) { return }; smtp.SendMail(a, nil, f, to, m) }", []string{"12:12 unguarded-send"}},
		{"var _ = fmt.Sprint\nvar _ = http.Get\nvar _ = os.Args\nvar _ = time.Now", nil},
	} {
		check(t, "job.go", head+tc.src, tc.want...)
	}
}

// TestSeedExamples: the seed reference's own good patterns pass, apart
// from the one it writes with an f-string, and each bad one is found.
func TestSeedExamples(t *testing.T) {
	for _, name := range []string{"patterns.py", "patterns.sql", "patterns.go.txt"} {
		src, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		path := strings.TrimSuffix(name, ".txt")
		fs, err := File(path, src)
		if err != nil {
			t.Fatal(err)
		}
		got := map[Rule]int{}
		for _, f := range fs {
			got[f.Rule]++
		}
		want := map[string]map[Rule]int{
			"patterns.py":  {SQLStringFormat: 2, AppendNoDelete: 1, NowInData: 1, AppendWrite: 1, PlainInsert: 1, PostWithoutKey: 1, UnguardedSend: 1},
			"patterns.sql": {PlainInsert: 4, NowInData: 2, RandomValue: 1, AutoIncrementKey: 2},
			"patterns.go":  {PlainInsert: 1, NowInData: 1, SQLStringFormat: 2, AppendWrite: 1, PostWithoutKey: 1},
		}[path]
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: %v, want %v\n%s", path, got, want, strings.Join(at(fs), "\n"))
		}
	}
}

func TestSyntaxErrors(t *testing.T) {
	for path, src := range map[string]string{
		"a.sql": "SELECT 1;\nSELECT 'open",
		"b.sql": "/* never closed",
		"c.py":  "x = 1\ny = 'open\n",
		"d.py":  "s = \"\"\"never closed",
		"e.go":  "package p\nfunc {",
	} {
		_, err := File(path, []byte(src))
		se, ok := err.(*SyntaxError)
		if !ok || se.Path != path || se.Line < 1 || se.Col < 1 {
			t.Errorf("%s: %v, want a SyntaxError with its position", path, err)
		}
	}
}

// fuzzFile checks what any input must give: no panic, and every finding
// or error inside the source.
func fuzzFile(t *testing.T, path, src string) {
	fs, err := File(path, []byte(src))
	lines := strings.Count(src, "\n") + 1
	if se, ok := err.(*SyntaxError); ok {
		if se.Line < 1 || se.Line > lines || se.Col < 1 {
			t.Fatalf("syntax error outside the source: %v", se)
		}
		return
	}
	for _, f := range fs {
		if f.Line < 1 || f.Line > lines || f.Col < 1 {
			t.Fatalf("finding outside the source: %v", f)
		}
	}
}

func FuzzSQL(f *testing.F) {
	for _, s := range []string{"INSERT INTO t VALUES (1);", "SELECT $a$x$a$, E'\\'', \"q\"\"\", `b`", "/* /* */ */ -- x\nCOPY t FROM STDIN", "TRUNCATE {t}; INSERT INTO {t} VALUES (%(a)s, :b, ?, $1)", "$", "CREATE TABLE", "DROP TABLE", "CREATE TABLE IF", "WITH", "TRUNCATE TABLE", "DELETE FROM"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { fuzzFile(t, "f.sql", s) })
}

func FuzzPython(f *testing.F) {
	for _, s := range []string{"x = datetime.now()", "f'''{a}''' rb'\\''", "def f():\n  requests.post(u)\n", "open(p, 'a')", "a = (\n1,\\\n2)", "cur.execute(\"INSERT INTO t VALUES (1)\" % x)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { fuzzFile(t, "f.py", s) })
}

func TestIgnore(t *testing.T) {
	check(t, "a.sql", "INSERT INTO t VALUES (now()); -- idem:ignore\n-- idem:ignore now-in-data\nINSERT INTO t VALUES (now());\nINSERT INTO t VALUES (1); -- idem:ignore auto-increment-key",
		"3:1 plain-insert", "4:1 plain-insert")
	check(t, "a.py", "# idem:ignore append-write,now-in-data\nopen(p, 'a'); datetime.now()\ndatetime.now()", "3:10 now-in-data")
}

// TestReviewCases: inputs a review found mishandled, each now right.
func TestReviewCases(t *testing.T) {
	// Lexing: valid input that was refused.
	check(t, "m.sql", "# it's a MySQL comment\nSELECT 1;\nINSERT IGNORE INTO t VALUES ('it\\'s');", nil...)
	check(t, "m.sql", "SELECT a # b FROM t;\n# nightly load\nINSERT INTO t VALUES (1);", "3:1 plain-insert")
	check(t, "f.py", "s = f\"{'\"'.join(cols)}\"\nu = f\"{\"'\"}\"\nv = f'{{x}}'", nil...)

	// Not SQL, not data, not a send.
	check(t, "p.py", "def load():\n    \"\"\"Insert rows into the warehouse table.\"\"\"\n    log.info(\"Insert into staging finished\")", nil...)
	check(t, "p.py", "cur.execute(\"INSERT INTO t (id, v) VALUES (%s, %s) \"\n            \"ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v\", row)", nil...)
	check(t, "p.py", "def helper():\n    pass\nif __name__ == \"__main__\":\n    conn.execute(\"DELETE FROM t WHERE d = 1\")\n    df.to_sql(\"t\", conn, if_exists=\"append\")", nil...)
	check(t, "p.py", "im = Image.open(\"image.png\")\nz = gzip.open(\"data.csv.gz\", \"rt\")", nil...)
	check(t, "p.py", "logging.info(\"started at %s\", datetime.now())\nelapsed = datetime.now() - start\ntime.sleep(2**n + random.uniform(0, 1))", nil...)
	check(t, "p.py", "r = client.messages.create(model=m, messages=msgs)\nsms = client.messages.create(to=n, from_=f, body=b)", "2:23 unguarded-send")
	check(t, "p.py", "df.write.insertInto(\"t\", True)\ndf.write.insertInto(\"t\")", "2:10 append-write")
	check(t, "q.sql", "CREATE TABLE devices (serial TEXT PRIMARY KEY);\nALTER TABLE t ALTER COLUMN id DROP IDENTITY;\nUPDATE jobs SET status = 'expired' WHERE expires_at < now();", nil...)
	check(t, "q.sql", "INSERT INTO t SELECT * FROM s WHERE ts > now() - interval '1 day' ON CONFLICT DO NOTHING;", nil...)
	check(t, "q.sql", "INSERT INTO t SELECT * FROM s WHERE ts > now() ON CONFLICT (id) DO UPDATE SET at = now() WHERE t.v <> now();", "1:84 now-in-data")

	// Found where they were missed.
	check(t, "p.py", "import requests as r\nr.post(url)\nfrom requests import post\npost(url)\ns = requests.Session()\ns.post(u)\nrequests.Session().post(u)",
		"2:3 post-without-key", "4:1 post-without-key", "6:3 post-without-key", "7:20 post-without-key")
	check(t, "p.py", "async def f():\n    async with httpx.AsyncClient() as c:\n        await c.post(u)", "3:17 post-without-key")
	check(t, "p.py", "df.write.format(\"delta\").mode(\"append\").save(p)", "1:26 append-write")
	check(t, "p.py", "def f():\n    df.to_sql(\"t\", con, if_exists=\"append\")\n    con.execute(\"DELETE FROM t\")", "2:8 append-without-delete")
	check(t, "q.sql", "DELETE FROM staging.orders;\nINSERT INTO prod.orders SELECT * FROM staging.orders;", "2:1 plain-insert")
	check(t, "q.sql", "INSERT INTO audit SELECT * FROM s WHERE status NOT IN ('x');\nINSERT OR ABORT INTO t VALUES (1);", "1:1 plain-insert", "2:1 plain-insert")
	check(t, "q.sql", "INSERT INTO t VALUES (strftime('%s', 'now')) ON CONFLICT DO NOTHING;", "1:38 now-in-data")

	// Ignore comments with reasons and several rules.
	check(t, "i.py", "x = datetime.now()  # idem:ignore now-in-data: the lease reads the clock", nil...)
	check(t, "i.sql", "-- idem:ignore plain-insert, now-in-data\nINSERT INTO t VALUES (now());\n-- idem:ignore -- audit log\nINSERT INTO t VALUES (now());", nil...)

	// Go: HTTP and cache calls are not SQL; a read binds the clock to filter.
	const head = "package p\n\nimport (\n\t\"fmt\"\n\t\"net/http\"\n\t\"time\"\n)\n\n"
	check(t, "g.go", head+"func f(id string) {\n\thttp.Get(fmt.Sprintf(\"https://x/%s\", id))\n\tcache.Get(fmt.Sprintf(\"k:%s\", id))\n\tdb.QueryContext(ctx, \"SELECT id FROM leases WHERE until < $1\", time.Now())\n}", nil...)
	check(t, "g.go", head+"func f() {\n\tdb.Exec(\"INSERT INTO t VALUES (1)\\n\" +\n\t\t\"ON CONFLICT DO NOTHING\")\n}", nil...)
	check(t, "g.go", head+"func f() {\n\tdb.Exec(\"INSERT INTO t (a, b)\\n\" +\n\t\t\"VALUES ($1, $2)\", 1, 2)\n}", "10:11 plain-insert")
	check(t, "p.py", "cur.execute(\"INSERT INTO t (a, b) \"\n            \"VALUES (%s, %s)\", row)", "1:14 plain-insert")
}

// TestDollarBodies: DO blocks and $$-quoted function bodies are linted
// as the SQL they hold, at their place in the file.
func TestDollarBodies(t *testing.T) {
	check(t, "f.sql", "DO $$\nBEGIN\n  INSERT INTO t VALUES (1);\nEND $$;\nCREATE OR REPLACE FUNCTION f() RETURNS void AS $body$\n  DELETE FROM u;\n  INSERT INTO u VALUES (now());\n$body$ LANGUAGE sql;\nSELECT $$INSERT INTO v VALUES (1)$$;\nDO $$ BEGIN IF x THEN UPDATE w SET at = now(); ELSE INSERT INTO w VALUES (1); END IF; END $$;",
		"3:3 plain-insert", "7:25 now-in-data", "10:41 now-in-data", "10:53 plain-insert")
}

// TestDeepNesting: unclosed or deeply nested brackets stay fast (they
// were quadratic, and 100,000 of them did not finish in 15 minutes).
func TestDeepNesting(t *testing.T) {
	start := time.Now()
	if _, err := File("n.py", []byte(strings.Repeat("f(", 100000))); err == nil {
		t.Fatal("unclosed brackets: no syntax error")
	}
	if _, err := File("n.py", []byte(strings.Repeat("f(", 50000)+strings.Repeat(")", 50000))); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s", d)
	}
}
