package recent

import (
	"fmt"
	"testing"
)

func TestKeys(t *testing.T) {
	var none *Keys
	if none.Seen("s", "k") || none.Seen("s", "k") {
		t.Fatal("a nil table remembered a key")
	}
	r := New(1 << 10)
	if r.Seen("s", "k") {
		t.Fatal("a key never claimed was seen")
	}
	if !r.Seen("s", "k") {
		t.Fatal("a key just claimed was not seen")
	}
	if r.Seen("s", "k2") || r.Seen("s2", "k") {
		t.Fatal("another key was seen")
	}
	// Lossy: each slot remembers the last key that landed in it. Read
	// back newest first, the newest key of every used slot is found, so
	// the hits count the slots in use: about 1,005 of 1,024 for 4,096
	// keys spread evenly, and at most half if the keys used half the table.
	const n = 1 << 12
	for i := range n {
		r.Seen("t", fmt.Sprint(i))
	}
	hits := 0
	for i := n - 1; i >= 0; i-- {
		if r.Seen("t", fmt.Sprint(i)) {
			hits++
		}
	}
	if hits < 900 || hits > 1<<10 {
		t.Fatalf("%d of %d keys found, newest first, in a table of %d slots", hits, n, 1<<10)
	}
}
