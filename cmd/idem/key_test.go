package main

import (
	"encoding/json"
	"regexp"
	"testing"
)

func TestKeyCommand(t *testing.T) {
	dir := t.TempDir()
	code, a, errs := runIn(t, dir, "", "key", "order_id=1042", "amount=19.99")
	if code != 0 || !regexp.MustCompile(`^[0-9a-f]{64}\n$`).MatchString(a) {
		t.Fatalf("exit %d %q %s", code, a, errs)
	}
	if _, b, _ := runIn(t, dir, "", "key", "amount=19.99", "order_id=1042"); b != a {
		t.Fatal("field order changed the key")
	}
	_, x, _ := runIn(t, dir, "", "key", "order_id=1:2", "amount=3")
	_, y, _ := runIn(t, dir, "", "key", "order_id=1", "amount=2:3")
	if x == y {
		t.Fatal(`order_id=1:2 amount=3 and order_id=1 amount=2:3 gave the same key`)
	}
	_, j, _ := runIn(t, dir, "", "key", "--json", "order_id=1042", "amount=19.99")
	var m struct {
		Key    string
		Fields map[string]string
	}
	if err := json.Unmarshal([]byte(j), &m); err != nil || m.Key+"\n" != a || m.Fields["amount"] != "19.99" {
		t.Fatalf("--json: %q", j)
	}
	for _, bad := range [][]string{{"key"}, {"key", "novalue"}, {"key", "a=1", "a=2"}, {"key", "=1"}} {
		if code, _, errs := runIn(t, dir, "", bad...); code != 2 || errs == "" {
			t.Fatalf("%q: exit %d %q, want 2 with a message", bad, code, errs)
		}
	}
}
