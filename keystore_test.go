package idem_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/idemhq/idem"
)

// The seed's payment example: a key per (order_id, amount), so a retried
// charge reuses its key and a different charge never does.
func ExampleDeriveKey() {
	key := idem.DeriveKey(map[string]string{"order_id": "1042", "amount": "19.99"})
	fmt.Println(len(key), key == idem.DeriveKey(map[string]string{"amount": "19.99", "order_id": "1042"}))
	// Output: 64 true
}

func TestDeriveKeyUnambiguous(t *testing.T) {
	seed := func(a, b string) string {
		h := sha256.Sum256([]byte(a + ":" + b))
		return hex.EncodeToString(h[:])
	}
	// The seed's encoding collides; ours must not.
	if seed("1:2", "3") != seed("1", "2:3") {
		t.Fatal("premise: the seed's encoding was expected to collide")
	}
	k1 := idem.DeriveKey(map[string]string{"order_id": "1:2", "amount": "3"})
	k2 := idem.DeriveKey(map[string]string{"order_id": "1", "amount": "2:3"})
	if k1 == k2 {
		t.Fatal("(\"1:2\",\"3\") and (\"1\",\"2:3\") derive the same key")
	}
	seen := map[string]string{}
	for _, f := range []map[string]string{
		{}, {"a": ""}, {"": "a"}, {"a": "b"}, {"ab": ""}, {"a": "", "b": ""}, {"a": "b", "c": ""},
		{"a": "bc"}, {"a=b": "c"}, {"a": "b=c"}, {"a": "\x00"}, {"a\x00": ""}, {"a": "1", "b": "2"}, {"a": "2", "b": "1"},
	} {
		k := idem.DeriveKey(f)
		if prev, dup := seen[k]; dup {
			t.Fatalf("%v and %s derive the same key", f, prev)
		}
		seen[k] = fmt.Sprint(f)
	}
	// Stable across releases: keys stored today must match tomorrow.
	if got := idem.DeriveKey(map[string]string{"order_id": "1042", "amount": "19.99"}); got != goldenKey {
		t.Fatalf("DeriveKey changed: %s", got)
	}
}

// goldenKey was computed independently (Python) from the documented encoding.
const goldenKey = "24a6a28172175e9f03d30807f2ecdbd18beb2a756c477036c76ed0fd6c2cccd2"

func TestParseKeyFields(t *testing.T) {
	m, err := idem.ParseKeyFields([]string{"order_id=1042", "note=a=b"})
	if err != nil || m["order_id"] != "1042" || m["note"] != "a=b" {
		t.Fatalf("%v %v", m, err)
	}
	for _, bad := range [][]string{nil, {"x"}, {"=1"}, {"a=1", "a=2"}} {
		if _, err := idem.ParseKeyFields(bad); !idem.IsInputError(err) {
			t.Fatalf("%q: %v, want bad input", bad, err)
		}
	}
}
