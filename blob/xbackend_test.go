package blob

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/conformance"
	"github.com/idemhq/idem/postgres"
	"github.com/idemhq/idem/source"
	"github.com/idemhq/idem/sqlite"
)

const allTypesCSV = "id,amount,ok,day,at,note,big\n" +
	"1,1.50,true,2024-01-05,2024-01-05T10:00:00Z,\"comma, \"\"quote\"\"\",12345678901234567890.123\n" +
	"2,-0.10,f,2024-02-29,2024-01-05 12:30:00.5+02:00,\"\",1\n" +
	"3,,,,,,\n" +
	"4,100,false,1999-12-31,2000-01-01T00:00:00.000001Z,ünïcödé,-7\n"

// TestFingerprintMatchesPostgres loads one CSV into PostgreSQL and into
// file: targets in every format: the fingerprints must be equal. Then the
// Parquet file idem wrote is itself loaded, as input, into PostgreSQL and
// SQLite: same fingerprint again.
func TestFingerprintMatchesPostgres(t *testing.T) {
	pgURL := conformance.ServerURL(t, "IDEM_TEST_POSTGRES")
	ctx := context.Background()
	dir := t.TempDir()
	csv := filepath.Join(dir, "all.csv")
	os.WriteFile(csv, []byte(allTypesCSV), 0o644)
	var rnd [4]byte
	rand.Read(rnd[:])
	table := "idem_blob_xfp_" + hex.EncodeToString(rnd[:])
	pg, err := postgres.Open(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	t.Cleanup(func() { pg.Pool().Exec(context.Background(), `DROP TABLE IF EXISTS "`+table+`", "`+table+`_pq"`) })

	load := func(tg idem.Target, table, file string) string {
		t.Helper()
		rr, err := source.Open([]string{file}, nil, source.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer rr.Close()
		res, err := idem.Load(ctx, tg, rr, idem.LoadSpec{Table: table, Key: []string{"id"}, Create: true, RunID: "r-" + table})
		if err != nil {
			t.Fatalf("load into %T: %v", tg, err)
		}
		fp, err := idem.FingerprintOf(ctx, tg, table, nil)
		if err != nil {
			t.Fatal(err)
		}
		if fp.Hex() != res.OutputFingerprint {
			t.Fatalf("%T: reported %s, read back %s", tg, res.OutputFingerprint, fp.Hex())
		}
		return fp.Hex()
	}
	want := load(pg, table, csv)
	var parquetFile string
	for _, opt := range []string{"", "?format=parquet&compression=zstd", "?format=csv", "?format=jsonl&compression=gzip"} {
		out := t.TempDir()
		tg := openT(t, "file:"+out+opt)
		if got := load(tg, "all_types", csv); got != want {
			t.Fatalf("file:%s: fingerprint %s, PostgreSQL %s", opt, got, want)
		}
		if opt == "" {
			m, _ := filepath.Glob(filepath.Join(out, "all_types", "part-*.parquet"))
			if len(m) != 1 {
				t.Fatalf("want one Parquet file, have %v", m)
			}
			parquetFile = m[0]
		}
	}
	// Parquet as input.
	if got := load(pg, table+"_pq", parquetFile); got != want {
		t.Fatalf("idem's Parquet loaded into PostgreSQL: %s, want %s", got, want)
	}
	lite, err := sqlite.Open(ctx, filepath.Join(dir, "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	if got := load(lite, "from_parquet", parquetFile); got != want {
		t.Fatalf("idem's Parquet loaded into SQLite: %s, want %s", got, want)
	}
	// The change detector works: one value differs, the fingerprints do.
	other := filepath.Join(dir, "other.csv")
	os.WriteFile(other, []byte(strings.Replace(allTypesCSV, "ünïcödé", "unicode", 1)), 0o644)
	if got := load(openT(t, "file:"+t.TempDir()), "all_types", other); got == want {
		t.Fatal("a changed value did not change the fingerprint")
	}
}
