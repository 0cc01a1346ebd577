package postgres

import "context"

// Commits counts the batches s has sent for its durable writes.
func Commits(s *KeyStore) uint64 { return s.writes.trips.Load() }

// Setting reads a run-time setting on one of the key store's connections.
func Setting(s *KeyStore, name string) (string, error) {
	var v string
	err := s.pool.QueryRow(context.Background(), "SELECT current_setting($1)", name).Scan(&v)
	return v, err
}
