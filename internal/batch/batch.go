// Package batch holds what the key stores' group commit and pipelining
// share: operations that arrive while one batch runs go together in the
// next, so that one commit or one round trip serves all of them, and no
// operation waits for a batch to fill. Group runs batches on their
// callers' goroutines (SQLite, Redis); Drain serves a dedicated worker
// (PostgreSQL).
package batch

// Drain appends to b the values ch holds right now, without waiting, until
// b has max values or ch is empty or closed.
func Drain[T any](b []T, ch <-chan T, max int) []T {
	for len(b) < max {
		select {
		case v, ok := <-ch:
			if !ok {
				return b
			}
			b = append(b, v)
		default:
			return b
		}
	}
	return b
}
