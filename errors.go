package idem

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Exit codes shared by every command (SPEC.md § Exit codes).
const (
	ExitOK       = 0
	ExitFailed   = 1 // retryable: nothing partial is visible
	ExitBadInput = 2 // usage or data error: retrying the same input will not help
	ExitDiffers  = 3
	ExitUnknown  = 4
	ExitTempFail = 75
)

// InputError is bad input that no retry can fix. It carries the position of
// the offending value so the user can open the file at the right place.
// Line and Col are 1-based; zero means "not known".
type InputError struct {
	File   string // file name, "-" for stdin, or a description such as "query"
	Line   int64
	Col    int
	Column string // column name, when the error concerns one value
	Msg    string
	Err    error
}

func (e *InputError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.FormatInt(e.Line, 10))
			if e.Col > 0 {
				b.WriteByte(':')
				b.WriteString(strconv.Itoa(e.Col))
			}
		}
		b.WriteString(": ")
	}
	if e.Column != "" {
		fmt.Fprintf(&b, "column %q: ", e.Column)
	}
	b.WriteString(e.Msg)
	if e.Err != nil {
		if e.Msg != "" {
			b.WriteString(": ")
		}
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *InputError) Unwrap() error { return e.Err }

// BadInput builds an InputError without a position: usage errors, bad flags,
// bad URLs.
func BadInput(format string, args ...any) error {
	return &InputError{Msg: fmt.Sprintf(format, args...)}
}

// IsInputError reports whether err (or anything it wraps) is bad input.
func IsInputError(err error) bool {
	var ie *InputError
	return errors.As(err, &ie)
}

// ExitCode maps an error to the exit code of SPEC.md: bad input is 2,
// everything else that failed is 1 (retryable).
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ce interface{ ExitCode() int }
	if errors.As(err, &ce) {
		return ce.ExitCode()
	}
	if IsInputError(err) {
		return ExitBadInput
	}
	return ExitFailed
}
