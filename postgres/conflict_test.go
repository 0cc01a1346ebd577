package postgres

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestConflictColumns(t *testing.T) {
	x := &tx{}
	for _, c := range []struct {
		detail string
		want   []string
	}{
		{`Key (id)=(7) already exists.`, []string{"id"}},
		{`Key (day, id)=(2024-01-01, 7) already exists.`, []string{"day", "id"}},
		{`Key ("we""ird, col", "b)=(c")=(1, 2) already exists.`, []string{`we"ird, col`, `b)=(c`}},
		{`Key (lower(name))=(x) already exists.`, nil}, // an expression index
		{`Key ("open=(1) already exists.`, nil},
		{`something else`, nil},
	} {
		err := fmt.Errorf("insert: %w", &pgconn.PgError{Code: "23505", Detail: c.detail})
		if got := x.ConflictColumns(err); !slices.Equal(got, c.want) {
			t.Errorf("%s: got %q, want %q", c.detail, got, c.want)
		}
	}
	if got := x.ConflictColumns(&pgconn.PgError{Code: "23503", Detail: `Key (id)=(7) is not present.`}); got != nil {
		t.Errorf("a foreign-key error named %q", got)
	}
	if got := x.ConflictColumns(errors.New("Key (id)=(7) already exists.")); got != nil {
		t.Errorf("a plain error named %q", got)
	}
}
