package source

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/idemhq/idem"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"
	"github.com/parquet-go/parquet-go/format"
)

const formatParquet = "parquet"

// parquetBatch is how many rows are decoded at a time: one row group is
// streamed in batches, never held whole.
const parquetBatch = 512

// ParquetReader streams the rows of one Parquet file, row group by row
// group, as canonical text values (see canon.go): the same values a CSV
// export of the file would give, so loads and fingerprints agree across
// formats. Only flat schemas (top-level columns, no lists or maps) are
// read; anything else is bad input naming the column.
//
// Pos.Line of a record is its 1-based row number in the file. Corrupt data
// is an *idem.InputError naming the file and the row group.
type ParquetReader struct {
	name   string
	f      *parquet.File
	ra     io.ReaderAt
	size   int64
	cols   []string
	decs   []colDecoder
	index  []int // file column -> output position, -1 when not bound
	rg     int   // current row group
	rows   parquet.Rows
	buf    []parquet.Row
	n, at  int
	row    int64 // rows returned so far
	vals   []idem.Value
	closer io.Closer
	err    error
}

type colDecoder func(v parquet.Value) (string, error)

// OpenParquet opens a Parquet file held by r (size bytes). name is used in
// messages. closer, when not nil, is closed by Close.
func OpenParquet(name string, r io.ReaderAt, size int64, closer io.Closer) (pr *ParquetReader, err error) {
	defer func() {
		if p := recover(); p != nil {
			pr, err = nil, &idem.InputError{File: name, Msg: fmt.Sprintf("not a readable Parquet file (%v)", p)}
		}
	}()
	// Declared sizes are checked against the file before parquet-go
	// allocates by them (parquet_bounds.go).
	if err := checkParquetFooter(r, size); err != nil {
		return nil, parquetOpenError(name, err)
	}
	f, err := parquet.OpenFile(r, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, parquetOpenError(name, err)
	}
	pr = &ParquetReader{name: name, f: f, ra: r, size: size, closer: closer}
	fields := f.Schema().Fields()
	for i, fl := range fields {
		if !fl.Leaf() || fl.Repeated() {
			return nil, &idem.InputError{File: name, Column: fl.Name(), Msg: "nested or repeated Parquet columns are not supported (flatten them first)"}
		}
		dec, err := decoderFor(fl.Type())
		if err != nil {
			return nil, &idem.InputError{File: name, Col: i + 1, Column: fl.Name(), Msg: err.Error()}
		}
		pr.cols = append(pr.cols, fl.Name())
		pr.decs = append(pr.decs, dec)
	}
	if got := len(f.Schema().Columns()); got != len(fields) {
		return nil, &idem.InputError{File: name, Msg: "nested Parquet columns are not supported"}
	}
	pr.index = make([]int, len(pr.cols))
	for i := range pr.index {
		pr.index[i] = i
	}
	pr.vals = make([]idem.Value, len(pr.cols))
	return pr, nil
}

func parquetOpenError(name string, err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("read %s: %w", name, err)
	}
	return &idem.InputError{File: name, Msg: "not a readable Parquet file", Err: err}
}

// Columns names the file's top-level columns in schema order.
func (r *ParquetReader) Columns() []string { return r.cols }

// Read returns the next row (see idem.RecordReader).
func (r *ParquetReader) Read() ([]idem.Value, idem.Pos, error) {
	line, err := r.read(r.vals)
	if err != nil {
		return nil, idem.Pos{}, err
	}
	return r.vals, idem.Pos{File: r.name, Line: line}, nil
}

// Close releases the file.
func (r *ParquetReader) Close() error {
	if r.rows != nil {
		r.rows.Close()
		r.rows = nil
	}
	if r.closer != nil {
		err := r.closer.Close()
		r.closer = nil
		return err
	}
	return nil
}

func (r *ParquetReader) head() ([]string, error) {
	if r.f.NumRows() == 0 {
		return nil, nil
	}
	return r.cols, nil
}

func (r *ParquetReader) bind(cols []string, firstFile string) error {
	pos := make(map[string]int, len(cols))
	for i, c := range cols {
		pos[c] = i
	}
	if len(cols) != len(r.cols) {
		return &idem.InputError{File: r.name, Msg: fmt.Sprintf("has columns %s, but %s has %s", strings.Join(r.cols, ","), firstFile, strings.Join(cols, ","))}
	}
	for i, c := range r.cols {
		j, ok := pos[c]
		if !ok {
			return &idem.InputError{File: r.name, Msg: fmt.Sprintf("has column %q, which %s does not have", c, firstFile)}
		}
		r.index[i] = j
	}
	return nil
}

func (r *ParquetReader) close() error { return r.Close() }

// read fills dst in bound column order.
func (r *ParquetReader) read(dst []idem.Value) (line int64, err error) {
	if r.err != nil {
		return 0, r.err
	}
	defer func() {
		if p := recover(); p != nil {
			err = r.corrupt(fmt.Errorf("%v", p))
			r.err = err
		}
	}()
	for r.at >= r.n {
		if err := r.fill(); err != nil {
			r.err = err
			return 0, err
		}
	}
	row := r.buf[r.at]
	r.at++
	r.row++
	for i := range dst {
		dst[i] = idem.Null
	}
	seen := 0
	for _, v := range row {
		c := v.Column()
		if c < 0 || c >= len(r.decs) {
			return 0, r.corrupt(fmt.Errorf("value for column %d outside the schema", c))
		}
		seen++
		if v.IsNull() {
			continue
		}
		s, err := r.decs[c](v)
		if err != nil {
			return 0, &idem.InputError{File: r.name, Line: r.row, Col: c + 1, Column: r.cols[c], Msg: err.Error()}
		}
		dst[r.index[c]] = idem.V(s)
	}
	if seen != len(r.decs) {
		return 0, r.corrupt(fmt.Errorf("row %d has %d values for %d columns", r.row, seen, len(r.decs)))
	}
	return r.row, nil
}

// fill decodes the next batch, moving to the next row group when one ends.
func (r *ParquetReader) fill() error {
	groups := r.f.RowGroups()
	for {
		if r.rows == nil {
			if r.rg >= len(groups) {
				return io.EOF
			}
			// Page sizes are checked before parquet-go allocates by
			// them, one row group at a time as the rows stream.
			md := r.f.Metadata()
			if r.rg >= len(md.RowGroups) {
				return r.corrupt(errors.New("row group missing from the footer"))
			}
			if err := checkRowGroupPages(r.ra, r.size, &md.RowGroups[r.rg]); err != nil {
				return r.corrupt(err)
			}
			r.rows = groups[r.rg].Rows()
			if r.buf == nil {
				r.buf = make([]parquet.Row, parquetBatch)
			}
		}
		n, err := r.rows.ReadRows(r.buf)
		r.n, r.at = n, 0
		if err != nil && err != io.EOF {
			return r.corrupt(err)
		}
		if n > 0 {
			return nil
		}
		// n == 0: this row group is done (io.EOF), or a reader that makes
		// no progress (treated as the end too, rather than spinning).
		if err == nil {
			want := groups[r.rg].NumRows()
			if got := r.rowsBefore(r.rg + 1); r.row < got && want > 0 {
				return r.corrupt(fmt.Errorf("row group ended after %d of %d rows", want-(got-r.row), want))
			}
		}
		r.rows.Close()
		r.rows = nil
		r.rg++
	}
}

func (r *ParquetReader) rowsBefore(g int) int64 {
	var n int64
	for _, rg := range r.f.RowGroups()[:g] {
		n += rg.NumRows()
	}
	return n
}

func (r *ParquetReader) corrupt(err error) error {
	return &idem.InputError{File: r.name, Msg: fmt.Sprintf("row group %d (of %d): corrupt Parquet data", r.rg+1, len(r.f.RowGroups())), Err: err}
}

// decoderFor maps a Parquet column type to canonical text. The logical
// annotation decides; the legacy converted type is the fallback for files
// written before logical types existed.
func decoderFor(t parquet.Type) (colDecoder, error) {
	kind := t.Kind()
	lt := t.LogicalType()
	var logical format.LogicalTypeValue
	if lt != nil {
		logical = lt.Value
	}
	if logical == nil {
		if ct := t.ConvertedType(); ct != nil {
			switch *ct {
			case deprecated.UTF8, deprecated.Enum, deprecated.Json:
				logical = &format.StringType{}
			case deprecated.Date:
				logical = &format.DateType{}
			case deprecated.TimestampMillis:
				logical = &format.TimestampType{IsAdjustedToUTC: true, Unit: format.TimeUnit{Value: &format.MilliSeconds{}}}
			case deprecated.TimestampMicros:
				logical = &format.TimestampType{IsAdjustedToUTC: true, Unit: format.TimeUnit{Value: &format.MicroSeconds{}}}
			case deprecated.Decimal:
				return nil, errors.New("legacy DECIMAL annotation without a logical type is not supported")
			}
		}
	}
	switch lg := logical.(type) {
	case *format.StringType, *format.EnumType, *format.JsonType:
		return decodeText, nil
	case *format.DateType:
		if kind != parquet.Int32 {
			break
		}
		return func(v parquet.Value) (string, error) {
			return time.Unix(int64(v.Int32())*86400, 0).UTC().Format("2006-01-02"), nil
		}, nil
	case *format.TimestampType:
		unit := unitOf(lg.Unit)
		if kind != parquet.Int64 || unit == 0 {
			break
		}
		return func(v parquet.Value) (string, error) {
			return idem.FormatTimestamp(fromUnit(v.Int64(), unit)), nil
		}, nil
	case *format.TimeType:
		unit := unitOf(lg.Unit)
		if unit == 0 {
			break
		}
		return func(v parquet.Value) (string, error) {
			n := v.Int64()
			if kind == parquet.Int32 {
				n = int64(v.Int32())
			}
			return time.Unix(0, 0).UTC().Add(time.Duration(n) * unit).Format("15:04:05.999999"), nil
		}, nil
	case *format.DecimalType:
		scale := int(lg.Scale)
		return func(v parquet.Value) (string, error) {
			var n big.Int
			switch kind {
			case parquet.Int32:
				n.SetInt64(int64(v.Int32()))
			case parquet.Int64:
				n.SetInt64(v.Int64())
			default:
				b := v.ByteArray()
				n.SetBytes(b)
				if len(b) > 0 && b[0]&0x80 != 0 { // two's complement
					var m big.Int
					m.Lsh(big.NewInt(1), uint(8*len(b)))
					n.Sub(&n, &m)
				}
			}
			return decimalText(&n, scale)
		}, nil
	case *format.UUIDType:
		return func(v parquet.Value) (string, error) {
			b := v.ByteArray()
			if len(b) != 16 {
				return "", errors.New("UUID value is not 16 bytes")
			}
			h := hex.EncodeToString(b)
			return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
		}, nil
	case *format.IntType:
		if !lg.IsSigned && lg.BitWidth == 64 {
			return func(v parquet.Value) (string, error) { return strconv.FormatUint(uint64(v.Int64()), 10), nil }, nil
		}
		if !lg.IsSigned && kind == parquet.Int32 {
			return func(v parquet.Value) (string, error) { return strconv.FormatUint(uint64(v.Uint32()), 10), nil }, nil
		}
	case nil:
	default:
		return nil, fmt.Errorf("Parquet logical type %s is not supported", lg)
	}
	switch kind {
	case parquet.Boolean:
		return func(v parquet.Value) (string, error) { return strconv.FormatBool(v.Boolean()), nil }, nil
	case parquet.Int32:
		return func(v parquet.Value) (string, error) { return strconv.FormatInt(int64(v.Int32()), 10), nil }, nil
	case parquet.Int64:
		return func(v parquet.Value) (string, error) { return strconv.FormatInt(v.Int64(), 10), nil }, nil
	case parquet.Float:
		return func(v parquet.Value) (string, error) { return floatText(float64(v.Float()), 32) }, nil
	case parquet.Double:
		return func(v parquet.Value) (string, error) { return floatText(v.Double(), 64) }, nil
	case parquet.Int96:
		// Legacy (Impala/Spark) timestamps: nanoseconds of the day, then
		// the Julian day number.
		return func(v parquet.Value) (string, error) {
			i := v.Int96()
			nanos := int64(uint64(i[0]) | uint64(i[1])<<32)
			day := int64(i[2]) - 2440588 // Julian day of 1970-01-01
			return idem.FormatTimestamp(time.Unix(day*86400, nanos).UTC()), nil
		}, nil
	case parquet.ByteArray, parquet.FixedLenByteArray:
		return decodeBytes, nil
	}
	return nil, fmt.Errorf("Parquet type %s is not supported", t)
}

func decodeText(v parquet.Value) (string, error) {
	b := v.ByteArray()
	if !utf8.Valid(b) {
		return "", errors.New("string value is not valid UTF-8")
	}
	return string(b), nil
}

// decodeBytes reads unannotated binary as text when it is UTF-8 (many
// writers leave strings unannotated), otherwise as PostgreSQL's bytea hex
// form.
func decodeBytes(v parquet.Value) (string, error) {
	b := v.ByteArray()
	if utf8.Valid(b) {
		return string(b), nil
	}
	return `\x` + hex.EncodeToString(b), nil
}

func unitOf(u format.TimeUnit) time.Duration {
	switch u.Value.(type) {
	case *format.MilliSeconds:
		return time.Millisecond
	case *format.MicroSeconds:
		return time.Microsecond
	case *format.NanoSeconds:
		return time.Nanosecond
	}
	return 0
}

func fromUnit(n int64, unit time.Duration) time.Time {
	per := int64(time.Second / unit)
	return time.Unix(n/per, (n%per)*int64(unit)).UTC()
}

func floatText(f float64, bits int) (string, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return strconv.FormatFloat(f, 'g', -1, bits), nil
	}
	// Shortest form that reads back as the same float, without exponent:
	// a CSV export by most tools gives the same digits.
	s := strconv.FormatFloat(f, 'f', -1, bits)
	return idem.Canon(idem.TypeNumeric, s)
}

func decimalText(n *big.Int, scale int) (string, error) {
	s := n.String()
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	if scale > 0 {
		if len(s) <= scale {
			s = strings.Repeat("0", scale-len(s)+1) + s
		}
		s = s[:len(s)-scale] + "." + s[len(s)-scale:]
	} else if scale < 0 {
		s += strings.Repeat("0", -scale)
	}
	if neg {
		s = "-" + s
	}
	return idem.Canon(idem.TypeNumeric, s)
}

// openParquetFile opens a Parquet input: plain files are read in place;
// compressed ones and stdin are first spooled to an unlinked temporary
// file, since Parquet's footer must be read before its rows.
func openParquetFile(name string, f *os.File, src io.Reader, comp string) (*ParquetReader, error) {
	if comp == "" && f != nil {
		st, err := f.Stat()
		if err == nil && st.Mode().IsRegular() {
			return OpenParquet(name, f, st.Size(), f)
		}
	}
	var closer io.Closer
	if f != nil {
		closer = f
	}
	rc, err := decompress(name, src, closer, comp)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	tmp, err := os.CreateTemp("", "idem-parquet-*")
	if err != nil {
		return nil, err
	}
	os.Remove(tmp.Name())
	n, err := io.Copy(tmp, rc)
	if err != nil {
		tmp.Close()
		if idem.IsInputError(err) {
			return nil, err
		}
		return nil, fmt.Errorf("spool %s: %w", name, err)
	}
	return OpenParquet(name, tmp, n, tmp)
}
