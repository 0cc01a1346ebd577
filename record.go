package idem

// Pos locates a record in its input for error messages.
type Pos struct {
	File string // as the user named it; "-" for stdin
	Line int64  // 1-based line where the record starts
	// Fields, when set, is each column's 1-based field number in this file
	// (0: none applies, as in a JSON object), for a file whose fields are
	// not in the columns' order; nil means column i is field i+1.
	Fields []int
}

// Field is the 1-based field number of column i in the record's file, 0
// when there is none to give.
func (p Pos) Field(i int) int {
	if p.Fields == nil {
		return i + 1
	}
	if i < len(p.Fields) {
		return p.Fields[i]
	}
	return 0
}

// RecordReader yields raw input records before typing: every format (CSV,
// TSV, JSON lines, a SQL query) is reduced to this, so validation and
// loading are written once.
type RecordReader interface {
	// Columns names the fields of every record, in order.
	Columns() []string
	// Read returns the next record (len == len(Columns())) and where it
	// starts. The slice may be reused by the next call; the strings may
	// not be. At the end it returns io.EOF. Malformed input is an
	// *InputError naming file, line and column (1-based field number).
	Read() ([]Value, Pos, error)
	Close() error
}
