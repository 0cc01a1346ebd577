package sqlplan

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/idemhq/idem"
)

func TestSpoolChunksRoundTrip(t *testing.T) {
	s, err := newSpool()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 100000 // about 3 MB: several chunks
	for i := 0; i < n; i++ {
		s.add([]byte(fmt.Sprintf("key-%d", i)), idem.RowHash{Hi: uint64(i), Lo: uint64(i) * 7})
	}
	var all []byte
	chunks := 0
	err = s.chunkEach(func(c []byte) error {
		if len(c) > digestChunk {
			t.Fatalf("chunk of %d bytes exceeds %d", len(c), digestChunk)
		}
		chunks++
		all = append(all, c...)
		return nil
	})
	if err != nil || chunks < 2 {
		t.Fatalf("chunks=%d err=%v", chunks, err)
	}
	e, ok := parseEntries(all)
	if !ok || e.len() != n {
		t.Fatalf("parsed %v entries, ok=%v", e.len(), ok)
	}
	for _, i := range []int{0, 1, n / 2, n - 1} {
		if got := string(e.key(i)); got != fmt.Sprintf("key-%d", i) {
			t.Fatalf("entry %d key %q", i, got)
		}
		if e.hash(i) != (idem.RowHash{Hi: uint64(i), Lo: uint64(i) * 7}) {
			t.Fatalf("entry %d hash", i)
		}
	}
}

func TestDigestFind(t *testing.T) {
	var c chunks
	for i := 0; i < 1000; i++ {
		c.add([]byte(fmt.Sprintf("k%d", i)), idem.RowHash{Lo: uint64(i)})
	}
	e, ok := parseEntries(c[0])
	if !ok {
		t.Fatal("parse")
	}
	// In order: the cursor finds every key without an index.
	for i := 0; i < 10; i++ {
		if e.find([]byte(fmt.Sprintf("k%d", i))) != i {
			t.Fatalf("in-order find %d", i)
		}
	}
	if e.index != nil {
		t.Fatal("index built although every lookup hit the cursor")
	}
	// Out of order and missing keys use the index.
	if e.find([]byte("k500")) != 500 || e.find([]byte("k3")) != 3 || e.find([]byte("nope")) != -1 {
		t.Fatal("out-of-order find")
	}
	// After a 64-bit hash collision the index is never built and lookups
	// scan: slower, same answers.
	e2, _ := parseEntries(c[0])
	e2.collided = true
	if e2.find([]byte("k700")) != 700 || e2.find([]byte("zz")) != -1 || e2.index != nil {
		t.Fatal("scan fallback")
	}
	if _, ok := parseEntries([]byte{5, 'a'}); ok {
		t.Fatal("truncated digest accepted")
	}
}

func TestKeyEncodingUnambiguous(t *testing.T) {
	keyIdx := []int{0, 1}
	a := encodeKey(nil, idem.Row{idem.V("1:2"), idem.V("3")}, keyIdx)
	b := encodeKey(nil, idem.Row{idem.V("1"), idem.V("2:3")}, keyIdx)
	if string(a) == string(b) {
		t.Fatal("composite keys collide")
	}
	if got := decodeKey(a, 2); !reflect.DeepEqual(got, []string{"1:2", "3"}) {
		t.Fatalf("decode %q", got)
	}
}
