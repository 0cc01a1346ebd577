package sqlite

import "context"

// WriteFirst makes every claim of s go to the writer first, as a claim
// of a key s has not seen lately does.
func WriteFirst(s *KeyStore) { s.recent = nil }

// SweepOnce runs one pass of s's sweep, reading window records.
func SweepOnce(s *KeyStore, window int) (int, error) {
	return s.sweepOnce(context.Background(), window)
}

// DeleteExpired runs the sweep's delete for one key.
func DeleteExpired(s *KeyStore, scope, key string) (int, error) {
	return s.deleteExpired(context.Background(), []pk{{scope, key}})
}
