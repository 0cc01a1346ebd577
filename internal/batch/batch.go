// Package batch holds the one step the key stores' group commit and
// pipelining share: after a worker has received one operation, it takes
// whatever else is already queued, so that one round trip or one commit
// serves every operation that arrived while the previous one ran.
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
