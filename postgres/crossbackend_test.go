package postgres_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/postgres"
	"github.com/idemhq/idem/source"
	"github.com/idemhq/idem/sqlite"
)

// TestFingerprintAcrossBackends loads one CSV into SQLite and into
// PostgreSQL: the fingerprints, as reported by the load and as read back,
// must be equal, for every type idem creates.
func TestFingerprintAcrossBackends(t *testing.T) {
	url := freshSchema(t)
	ctx := context.Background()
	dir := t.TempDir()
	csv := "id,amount,ok,day,at,note,big\n" +
		"1,1.50,true,2024-01-05,2024-01-05T10:00:00Z,\"comma, \"\"quote\"\"\",12345678901234567890.123\n" +
		"2,-0.10,f,2024-02-29,2024-01-05 12:30:00.5+02:00,\"\",1\n" +
		"3,,,,,,\n" +
		"4,100,false,1999-12-31,2000-01-01T00:00:00.000001Z,ünïcödé,-7\n"
	path := filepath.Join(dir, "all.csv")
	if err := os.WriteFile(path, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	lite, err := sqlite.Open(ctx, filepath.Join(dir, "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	pg, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	var reported, read []string
	for _, tg := range []idem.Target{lite, pg} {
		rr, err := source.Open([]string{path}, nil, source.Options{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := idem.Load(ctx, tg, rr, idem.LoadSpec{Table: "all_types", Key: []string{"id"}, Create: true, RunID: "r1"})
		rr.Close()
		if err != nil {
			t.Fatal(err)
		}
		fp, err := idem.FingerprintOf(ctx, tg, "all_types", nil)
		if err != nil {
			t.Fatal(err)
		}
		reported = append(reported, res.OutputFingerprint)
		read = append(read, fp.Hex())
	}
	if reported[0] != reported[1] || read[0] != read[1] || reported[0] != read[0] {
		t.Fatalf("fingerprints differ: reported sqlite=%s postgres=%s; read back sqlite=%s postgres=%s", reported[0], reported[1], read[0], read[1])
	}
	// And the fingerprint really is about content: change one value in
	// PostgreSQL only and they must differ.
	if _, err := pg.Pool().Exec(ctx, `UPDATE all_types SET note = note || '!' WHERE id = 4`); err != nil {
		t.Fatal(err)
	}
	fp, _ := idem.FingerprintOf(ctx, pg, "all_types", nil)
	if fp.Hex() == read[0] {
		t.Fatal("changing a value did not change the fingerprint")
	}
}
