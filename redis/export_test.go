package redis

// RoundTrips counts the pipelines s has sent.
func RoundTrips(s *KeyStore) uint64 { return s.trips.Load() }
