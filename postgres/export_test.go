package postgres

// Commits counts the batches s has sent for its durable writes.
func Commits(s *KeyStore) uint64 { return s.writes.trips.Load() }
