// Package recent remembers, lossily, which idempotency keys a process has
// claimed lately, so a key store can guess whether a claim is a first
// request (most likely a new key) or a repeat (a retry, a replay), and try
// the step that guess needs first. The guess never decides an outcome: both
// orders are correct for any key, a wrong guess costs one wasted step.
package recent

import (
	"hash/maphash"
	"sync/atomic"
)

// Keys is a fixed table of key hashes, each slot overwritten by the next
// key that lands in it. A nil *Keys remembers nothing. Safe for
// concurrent use.
type Keys struct {
	seed  maphash.Seed
	slots []atomic.Uint64
}

// New returns a table of n slots (8 bytes each).
func New(n int) *Keys {
	return &Keys{seed: maphash.MakeSeed(), slots: make([]atomic.Uint64, n)}
}

// Seen reports whether scope and key were seen lately, and remembers them.
func (r *Keys) Seen(scope, key string) bool {
	if r == nil {
		return false
	}
	var h maphash.Hash
	h.SetSeed(r.seed)
	h.WriteString(scope)
	h.WriteByte(0)
	h.WriteString(key)
	sum := h.Sum64()
	v := sum | 1 // never 0, the empty slot
	return r.slots[sum%uint64(len(r.slots))].Swap(v) == v
}
