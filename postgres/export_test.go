package postgres

import "context"

// Commits counts the batches s has sent for its durable writes.
func Commits(s *KeyStore) uint64 { return s.writes.trips.Load() }

// ExecForTest runs sql on one of the key store's connections.
func ExecForTest(s *KeyStore, sql string, args ...any) error {
	_, err := s.pool.Exec(context.Background(), sql, args...)
	return err
}

// QueryRowForTest scans one row of sql, run on one of the key store's connections.
func QueryRowForTest(s *KeyStore, sql string, dest ...any) error {
	rows, err := s.pool.Query(context.Background(), sql)
	if err != nil {
		return err
	}
	defer rows.Close()
	if rows.Next() && len(dest) > 0 {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
	}
	return rows.Err()
}

// WriteFirst makes every claim of s go to the group committer first, as a
// claim of a key s has not seen lately does.
func WriteFirst(s *KeyStore) { s.recent = nil }
