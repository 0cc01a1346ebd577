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

// TestKeyColon: --colon gives the seed's sha256("1042:19.99") (the
// digest below is that string's, computed independently), depends on
// the order, and refuses a value that would make it ambiguous.
func TestKeyColon(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := runIn(t, dir, "", "key", "--colon", "1042", "19.99")
	if code != 0 || out != "c942b61b9a1b7095579eced57ed18d3a91de6077a0ad28588c742bd98849b538\n" {
		t.Fatalf("exit %d %q %s", code, out, errs)
	}
	if _, b, _ := runIn(t, dir, "", "key", "--colon", "19.99", "1042"); b == out {
		t.Fatal("--colon ignored the order of the values")
	}
	if code, out, _ := runIn(t, dir, "", "key", "--colon", "1:2", "3"); code != 2 || out != "" {
		t.Fatalf("a value holding ':': exit %d %q, want 2 and no key", code, out)
	}
}
