package sqlite

// WriteFirst makes every claim of s go to the writer first, as a claim
// of a key s has not seen lately does.
func WriteFirst(s *KeyStore) { s.recent = nil }
