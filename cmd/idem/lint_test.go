package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idemhq/idem/lint"
)

func runLint(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"lint"}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// TestLintCommand: exit 0 for clean code, 3 with findings (text, JSON
// lines and SARIF all carrying them), 2 for a file that does not lex (at
// its line and column), an unknown rule or format, or a missing path.
func TestLintCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	clean := write("clean/ok.sql", "INSERT INTO t VALUES (1) ON CONFLICT (id) DO NOTHING;\n")
	write("jobs/load.py", "import datetime\nday = datetime.datetime.now()\n")
	write("jobs/schema.sql", "CREATE TABLE t (id serial primary key);\nINSERT INTO u VALUES (1);\n")
	write("jobs/.hidden/skip.sql", "INSERT INTO u VALUES (1);\n")
	write("jobs/notes.txt", "INSERT INTO u VALUES (1);\n")

	if code, out, errs := runLint(t, clean); code != 0 || out != "" {
		t.Fatalf("clean file: exit %d, %q %s", code, out, errs)
	}
	code, out, _ := runLint(t, filepath.Join(dir, "jobs"))
	want := []string{
		filepath.Join(dir, "jobs/load.py") + ":2:25 now-in-data ",
		filepath.Join(dir, "jobs/schema.sql") + ":1:20 auto-increment-key ",
		filepath.Join(dir, "jobs/schema.sql") + ":2:1 plain-insert ",
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 3 || len(lines) != len(want) {
		t.Fatalf("exit %d, want 3 and %d findings:\n%s", code, len(want), out)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("finding %d: %q, want it to start %q", i, lines[i], w)
		}
	}

	code, out, _ = runLint(t, "--format", "json", "--disable", "now-in-data", filepath.Join(dir, "jobs"))
	var rules []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var f struct {
			Rule string `json:"rule"`
			Line int    `json:"line"`
		}
		if err := json.Unmarshal([]byte(l), &f); err != nil {
			t.Fatalf("json line %q: %v", l, err)
		}
		rules = append(rules, f.Rule)
	}
	if code != 3 || strings.Join(rules, ",") != "auto-increment-key,plain-insert" {
		t.Fatalf("json with now-in-data disabled: exit %d, rules %v", code, rules)
	}

	code, out, _ = runLint(t, "--format", "sarif", filepath.Join(dir, "jobs"))
	var log struct {
		Version string `json:"version"`
		Runs    []struct {
			Results []struct {
				RuleID    string `json:"ruleId"`
				Locations []struct {
					Physical struct {
						Region struct {
							StartLine int `json:"startLine"`
						} `json:"region"`
					} `json:"physicalLocation"`
				} `json:"locations"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(out), &log); err != nil || code != 3 || log.Version != "2.1.0" || len(log.Runs) != 1 || len(log.Runs[0].Results) != 3 ||
		log.Runs[0].Results[2].RuleID != "plain-insert" || log.Runs[0].Results[2].Locations[0].Physical.Region.StartLine != 2 {
		t.Fatalf("sarif: exit %d, %v, %+v\n%s", code, err, log, out)
	}

	bad := write("bad/broken.py", "x = 1\ny = 'never closed\n")
	for _, args := range [][]string{{bad}, {"--disable", "no-such-rule", clean}, {"--format", "xml", clean}, {filepath.Join(dir, "missing")}, {filepath.Join(dir, "jobs/notes.txt")}} {
		code, out, errs := runLint(t, args...)
		if code != 2 || out != "" {
			t.Errorf("%v: exit %d, stdout %q, want 2 and nothing", args, code, out)
		}
		if args[0] == bad && !strings.Contains(errs, "broken.py:2:5") {
			t.Errorf("syntax error not at its place: %s", errs)
		}
	}
}

// TestLintSARIFDetails: columns count characters, paths are URIs, and the
// rules list stays an array with every rule disabled.
func TestLintSARIFDetails(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sp dir", "a#1.sql")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("SELECT 'héllo', '日本'; INSERT INTO t VALUES (1);\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, out, _ := runLint(t, "--format", "sarif", p)
	var log struct {
		Runs []struct {
			ColumnKind string `json:"columnKind"`
			Results    []struct {
				Locations []struct {
					Physical struct {
						Artifact struct {
							URI string `json:"uri"`
						} `json:"artifactLocation"`
						Region struct {
							StartColumn int `json:"startColumn"`
						} `json:"region"`
					} `json:"physicalLocation"`
				} `json:"locations"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(out), &log); err != nil || len(log.Runs) != 1 || len(log.Runs[0].Results) != 1 {
		t.Fatalf("%v\n%s", err, out)
	}
	loc := log.Runs[0].Results[0].Locations[0].Physical
	if loc.Region.StartColumn != 23 || log.Runs[0].ColumnKind != "unicodeCodePoints" || !strings.HasSuffix(loc.Artifact.URI, "/sp%20dir/a%231.sql") {
		t.Fatalf("column %d (want 23 characters; 28 in bytes), kind %q, uri %q", loc.Region.StartColumn, log.Runs[0].ColumnKind, loc.Artifact.URI)
	}
	var all []string
	for _, r := range lint.Rules {
		all = append(all, string(r.Rule))
	}
	_, out, _ = runLint(t, "--format", "sarif", "--disable", strings.Join(all, ","), p)
	if !strings.Contains(out, `"rules": []`) {
		t.Fatalf("rules not an empty array:\n%s", out)
	}
}
