package source

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/idemhq/idem"
)

// lines reads a file line by line out of a large buffer, counting physical
// lines for error positions.
type lines struct {
	name    string
	in      *input
	br      *bufio.Reader
	started bool   // the byte order mark has been dealt with
	line    int64  // physical lines consumed so far
	long    []byte // a line longer than the buffer, assembled
}

func newLines(name string, in *input) lines {
	// Stdin arrives already buffered (for sniffing compression); a second
	// buffer would only add a copy.
	if br, ok := in.Reader.(*bufio.Reader); ok && br.Size() >= bufSize {
		return lines{name: name, in: in, br: br}
	}
	size := bufSize
	if in.size >= 0 && in.size < bufSize {
		// Many small files should not cost a large buffer each.
		size = max(int(in.size)+1, 4096)
	}
	return lines{name: name, in: in, br: bufio.NewReaderSize(in, size)}
}

func (r *lines) close() error { return r.in.Close() }

// skipBOM drops a UTF-8 byte order mark at the start of the file:
// spreadsheet exports add one, and it would otherwise become part of the
// first column's name.
func (r *lines) skipBOM() error {
	r.started = true
	b, err := r.br.Peek(3)
	if err != nil && err != io.EOF {
		return r.ioErr(err)
	}
	if len(b) == 3 && b[0] == 0xef && b[1] == 0xbb && b[2] == 0xbf {
		r.br.Discard(3)
	}
	return nil
}

// ioErr places a decompression error at the line being read.
func (r *lines) ioErr(err error) error {
	var ie *idem.InputError
	if errors.As(err, &ie) && ie.Line == 0 {
		ie.Line = r.line + 1
	}
	return err
}

// nextLine returns the next physical line including its '\n' (absent only
// at the end of the file). The slice is valid until the next call.
func (r *lines) nextLine() ([]byte, error) {
	l, err := r.br.ReadSlice('\n')
	if err == nil {
		r.line++
		return l, nil
	}
	if err == bufio.ErrBufferFull {
		r.long = append(r.long[:0], l...)
		for err == bufio.ErrBufferFull {
			if len(r.long) > maxRecord {
				return nil, &idem.InputError{File: r.name, Line: r.line + 1,
					Msg: fmt.Sprintf("line longer than %d MiB", maxRecord>>20)}
			}
			l, err = r.br.ReadSlice('\n')
			r.long = append(r.long, l...)
		}
		l = r.long
		if err == nil {
			r.line++
			return l, nil
		}
	}
	if err == io.EOF {
		if len(l) > 0 {
			r.line++
			return l, nil
		}
		return nil, io.EOF
	}
	return nil, r.ioErr(err)
}
