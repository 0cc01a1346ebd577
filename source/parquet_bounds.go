package source

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/parquet-go/parquet-go/format"
)

// Bounds checked before parquet-go decodes a file. parquet-go sizes its
// buffers by what the file declares (the footer length, thrift list
// lengths, a page's sizes and value count) and trusts it, so a few crafted
// bytes can ask for gigabytes, which is a fatal error in Go, not a panic
// that could be recovered. These checks compare every declared size with
// the bytes that back it, so a damaged file costs at most about its own
// size before it is reported. No library does this for parquet-go, hence
// the hand-written walk over Thrift's compact encoding (the Parquet
// footer's and page headers' encoding).
const (
	// maxPageBytes bounds a page's uncompressed size. Writers aim for
	// pages of about 1 MiB (parquet-mr, Arrow, Spark, DuckDB, idem).
	maxPageBytes = 256 << 20
	// maxPageValues bounds a page's value count, which parquet-go
	// allocates levels and values for (writers cap pages at 20,000 rows
	// by default).
	maxPageValues = 16 << 20
	// maxPageHeader is the most bytes one page header may take
	// (statistics included).
	maxPageHeader = 1 << 20
	// maxThriftDepth bounds nesting in the footer and page headers; real
	// files nest a few levels.
	maxThriftDepth = 32
)

var errThrift = errors.New("malformed Thrift data")

// compactWalker steps over one Thrift compact-protocol value, checking that
// every length it declares fits in the bytes that remain.
type compactWalker struct {
	b   []byte
	off int
	// top, when set, sees the top-level struct's integer fields and
	// struct fields' integer fields one level down (parent id, id,
	// value), which is all the page-header check needs.
	top func(parent, id int16, v int64)
}

func (w *compactWalker) byte1() (byte, error) {
	if w.off >= len(w.b) {
		return 0, errThrift
	}
	c := w.b[w.off]
	w.off++
	return c, nil
}

func (w *compactWalker) uvarint() (uint64, error) {
	v, n := binary.Uvarint(w.b[w.off:])
	if n <= 0 {
		return 0, errThrift
	}
	w.off += n
	return v, nil
}

func (w *compactWalker) varint() (int64, error) {
	u, err := w.uvarint()
	return int64(u>>1) ^ -int64(u&1), err
}

// length reads a declared count or size and checks that at least min*n
// bytes remain for it.
func (w *compactWalker) length(min int) (int, error) {
	n, err := w.uvarint()
	if err != nil {
		return 0, err
	}
	if n > uint64(len(w.b)-w.off)/uint64(min) {
		return 0, fmt.Errorf("%w: declares %d items with %d bytes left", errThrift, n, len(w.b)-w.off)
	}
	return int(n), nil
}

// structure walks a struct. path is the field ids leading here (for top).
func (w *compactWalker) structure(depth int, parent int16, isTop bool) error {
	if depth > maxThriftDepth {
		return fmt.Errorf("%w: nested too deeply", errThrift)
	}
	var id int16
	for {
		h, err := w.byte1()
		if err != nil {
			return err
		}
		if h == 0 {
			return nil
		}
		typ := h & 0x0f
		if d := h >> 4; d != 0 {
			id += int16(d)
		} else {
			v, err := w.varint()
			if err != nil {
				return err
			}
			id = int16(v)
		}
		switch typ {
		case 1, 2: // booleans carry their value in the type
			continue
		case 3, 4, 5, 6:
			if typ == 3 {
				if _, err := w.byte1(); err != nil {
					return err
				}
				continue
			}
			v, err := w.varint()
			if err != nil {
				return err
			}
			if w.top != nil && typ == 5 {
				if isTop {
					w.top(0, id, v)
				} else if depth == 1 {
					w.top(parent, id, v)
				}
			}
		case 12:
			if err := w.structure(depth+1, id, false); err != nil {
				return err
			}
		default:
			if err := w.value(typ, depth+1); err != nil {
				return err
			}
		}
	}
}

// value walks one value of a non-struct-field position (list elements,
// map entries) or the remaining field types.
func (w *compactWalker) value(typ byte, depth int) error {
	if depth > maxThriftDepth {
		return fmt.Errorf("%w: nested too deeply", errThrift)
	}
	switch typ {
	case 1, 2, 3: // a boolean or byte element is one byte
		_, err := w.byte1()
		return err
	case 4, 5, 6:
		_, err := w.varint()
		return err
	case 7:
		if len(w.b)-w.off < 8 {
			return errThrift
		}
		w.off += 8
		return nil
	case 8:
		n, err := w.length(1)
		if err != nil {
			return err
		}
		w.off += n
		return nil
	case 9, 10:
		h, err := w.byte1()
		if err != nil {
			return err
		}
		n, et := int(h>>4), h&0x0f
		if n == 15 {
			if n, err = w.length(1); err != nil {
				return err
			}
		} else if n > len(w.b)-w.off {
			return errThrift
		}
		for range n {
			if err := w.value(et, depth+1); err != nil {
				return err
			}
		}
		return nil
	case 11:
		n, err := w.length(2)
		if err != nil || n == 0 {
			return err
		}
		kv, err := w.byte1()
		if err != nil {
			return err
		}
		for range n {
			if err := w.value(kv>>4, depth+1); err != nil {
				return err
			}
			if err := w.value(kv&0x0f, depth+1); err != nil {
				return err
			}
		}
		return nil
	case 12:
		return w.structure(depth, 0, false)
	}
	return fmt.Errorf("%w: unknown type %d", errThrift, typ)
}

// checkParquetFooter checks the file's frame and footer before parquet-go
// reads them: magic bytes, a footer length inside the file, and a footer
// whose every declared length is backed by bytes.
func checkParquetFooter(r io.ReaderAt, size int64) error {
	if size < 12 {
		return errors.New("too short for a Parquet file")
	}
	var head, tail [8]byte
	if _, err := r.ReadAt(head[:4], 0); err != nil {
		return err
	}
	if _, err := r.ReadAt(tail[:], size-8); err != nil {
		return err
	}
	if string(tail[4:]) == "PARE" || string(head[:4]) == "PARE" {
		return errors.New("encrypted Parquet files are not supported")
	}
	if string(head[:4]) != "PAR1" || string(tail[4:]) != "PAR1" {
		return errors.New("no Parquet magic bytes (PAR1) at the start and end")
	}
	n := int64(binary.LittleEndian.Uint32(tail[:4]))
	if n == 0 || n > size-12 {
		return fmt.Errorf("footer length %d does not fit in a %d-byte file", n, size)
	}
	footer := make([]byte, n)
	if _, err := r.ReadAt(footer, size-8-n); err != nil {
		return err
	}
	w := &compactWalker{b: footer}
	if err := w.structure(0, 0, true); err != nil {
		return fmt.Errorf("footer: %w", err)
	}
	return nil
}

// checkRowGroupPages walks the page headers of a row group's column
// chunks: each chunk must lie inside the file's data, and each page must
// fit in its chunk and declare a bounded size and value count. It reads
// only the headers.
func checkRowGroupPages(r io.ReaderAt, size int64, rg *format.RowGroup) error {
	if rg.NumRows < 0 {
		return errors.New("negative row count")
	}
	var buf []byte
	for c, cc := range rg.Columns {
		m := cc.MetaData
		start := m.DataPageOffset
		if m.DictionaryPageOffset > 0 && m.DictionaryPageOffset < start {
			start = m.DictionaryPageOffset
		}
		end := start + m.TotalCompressedSize
		if start < 4 || m.TotalCompressedSize < 0 || end < start || end > size-8 {
			return fmt.Errorf("column %d: column chunk [%d, %d) is outside the file's data", c+1, start, end)
		}
		for pos := start; pos < end; {
			n := min(end-pos, maxPageHeader)
			if int64(cap(buf)) < n {
				buf = make([]byte, n)
			}
			b := buf[:n]
			if _, err := r.ReadAt(b, pos); err != nil && err != io.EOF {
				return err
			}
			var comp, uncomp, values int64 = -1, -1, 0
			w := &compactWalker{b: b, top: func(parent, id int16, v int64) {
				switch {
				case parent == 0 && id == 2:
					uncomp = v
				case parent == 0 && id == 3:
					comp = v
				case (parent == 5 || parent == 7 || parent == 8) && id == 1:
					values = v
				}
			}}
			if err := w.structure(0, 0, true); err != nil {
				return fmt.Errorf("column %d: page header at byte %d: %w", c+1, pos, err)
			}
			switch {
			case comp < 0 || uncomp < 0:
				return fmt.Errorf("column %d: page header at byte %d has no page sizes", c+1, pos)
			case pos+int64(w.off)+comp > end:
				return fmt.Errorf("column %d: page at byte %d (%d bytes) runs past its column chunk", c+1, pos, comp)
			case uncomp > maxPageBytes:
				return fmt.Errorf("column %d: page at byte %d declares %d bytes uncompressed (at most %d are read)", c+1, pos, uncomp, maxPageBytes)
			case values < 0 || values > maxPageValues:
				return fmt.Errorf("column %d: page at byte %d declares %d values (at most %d are read)", c+1, pos, values, maxPageValues)
			}
			pos += int64(w.off) + comp
		}
	}
	return nil
}
