package redis

// RoundTrips counts the pipelines s has sent.
func RoundTrips(s *KeyStore) uint64 { return s.trips.Load() }

// OwnRoundTrips counts the pipelines sent by a caller itself rather than
// by a pipeliner.
func OwnRoundTrips(s *KeyStore) uint64 { return s.own.Load() }
