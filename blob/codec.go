package blob

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/idemhq/idem"
	"github.com/idemhq/idem/source"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	pgzip "github.com/parquet-go/parquet-go/compress/gzip"
	"github.com/parquet-go/parquet-go/compress/snappy"
	"github.com/parquet-go/parquet-go/compress/uncompressed"
	pzstd "github.com/parquet-go/parquet-go/compress/zstd"
)

// Data file formats and compressions (URL parameters format= and
// compression=).
const (
	FormatParquet = "parquet"
	FormatCSV     = "csv"
	FormatJSONL   = "jsonl"
)

// Sizes of what is written. A folder of up to defaultRowsPerFile rows is
// one file; row groups bound what a reader must hold at once.
const (
	defaultRowsPerFile = 1 << 20
	rowsPerGroup       = 64 << 10
)

// writerID is the fixed "created_by" of every Parquet file: the library's
// default includes its build hash, which would change the bytes of an
// unchanged partition after an upgrade of idem's dependencies.
const writerID = "idem"

type codec struct {
	format, compression string
}

func (c codec) ext() string {
	e := "." + c.format
	switch {
	case c.format == FormatParquet:
	case c.compression == "gzip":
		e += ".gz"
	case c.compression == "zstd":
		e += ".zst"
	}
	return e
}

func checkCodec(format, comp string) (codec, error) {
	switch format {
	case "":
		format = FormatParquet
	case FormatParquet, FormatCSV, FormatJSONL:
	default:
		return codec{}, idem.BadInput("format=%q: want parquet, csv or jsonl", format)
	}
	switch comp {
	case "":
		if format == FormatParquet {
			comp = "snappy"
		} else {
			comp = "none"
		}
	case "none", "gzip", "zstd":
	case "snappy":
		if format != FormatParquet {
			return codec{}, idem.BadInput("compression=snappy is for Parquet only (csv and jsonl take none, gzip or zstd)")
		}
	default:
		return codec{}, idem.BadInput("compression=%q: want none, snappy (Parquet), gzip or zstd", comp)
	}
	return codec{format, comp}, nil
}

// encoded is one data file ready to store.
type encoded struct {
	data []byte
	rows int64
	sha  string
}

// encode writes rows (laid out as schema; columns in skip are left out of
// the file, e.g. the partition column, which lives in the folder name) as
// one file. The output depends only on the rows, their order and the
// schema: no timestamps, no random values, a fixed writer name.
func (c codec) encode(schema idem.Schema, skip string, rows []idem.Row) (*encoded, error) {
	var cols []int
	for i, col := range schema {
		if col.Name != skip {
			cols = append(cols, i)
		}
	}
	var buf bytes.Buffer
	var err error
	switch c.format {
	case FormatParquet:
		err = c.encodeParquet(&buf, schema, cols, rows)
	default:
		err = c.encodeText(&buf, schema, cols, rows)
	}
	if err != nil {
		return nil, err
	}
	e := &encoded{data: buf.Bytes(), rows: int64(len(rows))}
	sum := sha256.Sum256(e.data)
	e.sha = hex.EncodeToString(sum[:])
	return e, nil
}

func parquetNode(t idem.Type) parquet.Node {
	switch t {
	case idem.TypeInteger:
		return parquet.Int(64)
	case idem.TypeBoolean:
		return parquet.Leaf(parquet.BooleanType)
	case idem.TypeDate:
		return parquet.Date()
	case idem.TypeTimestamp:
		return parquet.Timestamp(parquet.Microsecond)
	}
	// Numeric is kept as its exact canonical text: Parquet's DECIMAL needs
	// one precision and scale per file, and idem's numbers have neither.
	return parquet.String()
}

func (c codec) parquetCodec() compress.Codec {
	switch c.compression {
	case "none":
		return &uncompressed.Codec{}
	case "gzip":
		return &pgzip.Codec{Level: pgzip.DefaultCompression}
	case "zstd":
		return &pzstd.Codec{Level: pzstd.DefaultLevel, Concurrency: 1}
	}
	return &snappy.Codec{}
}

func (c codec) encodeParquet(w io.Writer, schema idem.Schema, cols []int, rows []idem.Row) error {
	group := parquet.Group{}
	for _, i := range cols {
		group[schema[i].Name] = parquet.Optional(parquetNode(schema[i].Type))
	}
	ps := parquet.NewSchema("idem", group)
	// The library orders a group's fields by name; map each to its leaf.
	leaf := make([]int, len(cols))
	for k, i := range cols {
		lc, ok := ps.Lookup(schema[i].Name)
		if !ok {
			return fmt.Errorf("parquet schema lost column %q", schema[i].Name)
		}
		leaf[k] = lc.ColumnIndex
	}
	types := make([]idem.Type, len(cols))
	for k, i := range cols {
		types[k] = schema[i].Type
	}
	pw := parquet.NewWriter(w, ps,
		parquet.CreatedBy(writerID, "1", writerID),
		parquet.Compression(c.parquetCodec()),
		parquet.MaxRowsPerRowGroup(rowsPerGroup),
		parquet.KeyValueMetadata("idem.types", typesMeta(schema, cols)),
	)
	prow := make(parquet.Row, len(cols))
	batch := make([]parquet.Row, 0, 256)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := pw.WriteRows(batch)
		batch = batch[:0]
		return err
	}
	for _, r := range rows {
		prow = make(parquet.Row, len(cols))
		for k, i := range cols {
			v := r[i]
			if v.Null {
				prow[leaf[k]] = parquet.NullValue().Level(0, 0, leaf[k])
				continue
			}
			pv, err := toParquet(types[k], v.S)
			if err != nil {
				return fmt.Errorf("column %q: %w", schema[i].Name, err)
			}
			prow[leaf[k]] = pv.Level(0, 1, leaf[k])
		}
		batch = append(batch, prow)
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	return pw.Close()
}

// typesMeta records idem's column types in the file, so that numeric text
// columns are recognisable to anyone reading the file without the manifest.
func typesMeta(schema idem.Schema, cols []int) string {
	m := make([]string, len(cols))
	for k, i := range cols {
		m[k] = schema[i].Name + ":" + schema[i].Type.String()
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func toParquet(t idem.Type, s string) (parquet.Value, error) {
	switch t {
	case idem.TypeInteger:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return parquet.Value{}, err
		}
		return parquet.Int64Value(n), nil
	case idem.TypeBoolean:
		return parquet.BooleanValue(s == "true"), nil
	case idem.TypeDate:
		d, err := time.Parse("2006-01-02", s)
		if err != nil {
			return parquet.Value{}, err
		}
		// From Unix seconds, not a time.Duration: a Duration saturates
		// at ±292 years, silently moving 0001-01-01 and 9999-12-31.
		// Midnight UTC is a whole number of days, so the division is exact.
		return parquet.Int32Value(int32(d.Unix() / 86400)), nil
	case idem.TypeTimestamp:
		ts, err := idem.ParseTimestamp(s)
		if err != nil {
			return parquet.Value{}, err
		}
		return parquet.Int64Value(ts.UnixMicro()), nil
	}
	return parquet.ByteArrayValue([]byte(s)), nil
}

// encodeText writes CSV (PostgreSQL's convention: NULL is an unquoted empty
// field, every value is quoted) or JSON lines (NULL is null; numbers and
// booleans bare, everything else a string), then compresses.
func (c codec) encodeText(w io.Writer, schema idem.Schema, cols []int, rows []idem.Row) error {
	var out io.Writer = w
	var closeFn func() error
	switch c.compression {
	case "gzip":
		// No name and a zero modification time in the header: same input,
		// same bytes.
		zw, _ := gzip.NewWriterLevel(w, gzip.DefaultCompression)
		out, closeFn = zw, zw.Close
	case "zstd":
		zw, err := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1))
		if err != nil {
			return err
		}
		out, closeFn = zw, zw.Close
	}
	bw := bufio.NewWriterSize(out, 64<<10)
	if c.format == FormatCSV {
		for k, i := range cols {
			if k > 0 {
				bw.WriteByte(',')
			}
			writeCSVQuoted(bw, schema[i].Name)
		}
		bw.WriteByte('\n')
		for _, r := range rows {
			for k, i := range cols {
				if k > 0 {
					bw.WriteByte(',')
				}
				if !r[i].Null {
					writeCSVQuoted(bw, r[i].S)
				}
			}
			bw.WriteByte('\n')
		}
	} else {
		for _, r := range rows {
			bw.WriteByte('{')
			for k, i := range cols {
				if k > 0 {
					bw.WriteByte(',')
				}
				writeJSONString(bw, schema[i].Name)
				bw.WriteByte(':')
				v := r[i]
				switch {
				case v.Null:
					bw.WriteString("null")
				case schema[i].Type == idem.TypeInteger || schema[i].Type == idem.TypeNumeric || schema[i].Type == idem.TypeBoolean:
					bw.WriteString(v.S)
				default:
					writeJSONString(bw, v.S)
				}
			}
			bw.WriteString("}\n")
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if closeFn != nil {
		return closeFn()
	}
	return nil
}

func writeCSVQuoted(w *bufio.Writer, s string) {
	w.WriteByte('"')
	w.WriteString(strings.ReplaceAll(s, `"`, `""`))
	w.WriteByte('"')
}

func writeJSONString(w *bufio.Writer, s string) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	w.Write(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

// decode reads one stored data file back as records with their own column
// names (canonical text from Parquet; raw text from CSV/JSON lines, which
// the caller canonicalises against the manifest's types).
func decode(name, format string, data []byte) (idem.RecordReader, error) {
	if format == FormatParquet {
		return source.OpenParquet(name, bytes.NewReader(data), int64(len(data)), nil)
	}
	f := "csv"
	if format == FormatJSONL {
		f = "jsonl"
	}
	return source.Open([]string{"-"}, bytes.NewReader(data), source.Options{Format: f})
}
