package idem

import "fmt"

// Type is the logical type of a column. idem knows a small set of types that
// every backend can store exactly; it maps each to the backend's own type
// when it creates a table and back again when it describes one.
type Type uint8

const (
	TypeText Type = iota
	TypeInteger
	TypeNumeric
	TypeBoolean
	TypeDate
	TypeTimestamp
)

var typeNames = [...]string{"text", "integer", "numeric", "boolean", "date", "timestamp"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Column is one named, typed column.
type Column struct {
	Name string
	Type Type
}

// Schema is an ordered list of columns.
type Schema []Column

// Index returns the position of the named column, or -1.
func (s Schema) Index(name string) int {
	for i, c := range s {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// Names lists the column names in order.
func (s Schema) Names() []string {
	out := make([]string, len(s))
	for i, c := range s {
		out[i] = c.Name
	}
	return out
}

// Value is one field in canonical text form (see canon.go): what a row
// carries after validation, what targets write and what fingerprints hash.
type Value struct {
	S    string
	Null bool
}

// Null is the NULL value.
var Null = Value{Null: true}

// V makes a non-NULL value.
func V(s string) Value { return Value{S: s} }

// Row is one record of values, in schema order.
type Row []Value
