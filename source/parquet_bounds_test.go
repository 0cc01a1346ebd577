package source

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/idemhq/idem"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
)

// A footer whose declared length exceeds the file made parquet-go allocate
// that length (up to 4 GiB) before reading anything: a fatal out-of-memory
// in the fuzzer's workers. It must be bad input instead.
func TestParquetFooterLengthBeyondFile(t *testing.T) {
	data := writePQ(t, sampleRecs(3), 2)
	bad := append([]byte(nil), data...)
	binary.LittleEndian.PutUint32(bad[len(bad)-8:], 0x7fff0000)
	_, err := OpenParquet("big-footer.parquet", bytes.NewReader(bad), int64(len(bad)), nil)
	var ie *idem.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "big-footer.parquet") || !strings.Contains(err.Error(), "footer length") {
		t.Fatalf("want an input error about the footer length, got %v", err)
	}
}

// A Thrift list in the footer declaring more elements than there are bytes
// left (parquet-go makes the slice first) is refused before decoding.
func TestParquetFooterListBeyondBytes(t *testing.T) {
	// Field 2 (schema), type list (9), short form with the long-size
	// marker: elements of type struct (12), count 2^30 as a varint.
	footer := []byte{0x29, 0xfc, 0x80, 0x80, 0x80, 0x80, 0x04, 0x00}
	var file bytes.Buffer
	file.WriteString("PAR1")
	file.Write(footer)
	binary.Write(&file, binary.LittleEndian, uint32(len(footer)))
	file.WriteString("PAR1")
	_, err := OpenParquet("list.parquet", bytes.NewReader(file.Bytes()), int64(file.Len()), nil)
	var ie *idem.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "declares 1073741824 items") {
		t.Fatalf("want an input error about the list length, got %v", err)
	}
}

// Page headers are checked against their column chunk and the page limits
// before parquet-go sizes buffers by them.
func TestParquetPageBounds(t *testing.T) {
	page := func(h format.PageHeader) []byte {
		b, err := thrift.Marshal(new(thrift.CompactProtocol), &h)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name string
		hdr  format.PageHeader
		body int
		want string
	}{
		{"ok", format.PageHeader{Type: format.DataPage, UncompressedPageSize: 10, CompressedPageSize: 10,
			DataPageHeader: thrift.New(format.DataPageHeader{NumValues: 3})}, 10, ""},
		{"huge uncompressed", format.PageHeader{Type: format.DataPage, UncompressedPageSize: 1 << 30, CompressedPageSize: 10,
			DataPageHeader: thrift.New(format.DataPageHeader{NumValues: 3})}, 10, "bytes uncompressed"},
		{"past chunk", format.PageHeader{Type: format.DataPage, UncompressedPageSize: 10, CompressedPageSize: 1 << 20,
			DataPageHeader: thrift.New(format.DataPageHeader{NumValues: 3})}, 10, "runs past its column chunk"},
		{"many values", format.PageHeader{Type: format.DataPage, UncompressedPageSize: 10, CompressedPageSize: 10,
			DataPageHeader: thrift.New(format.DataPageHeader{NumValues: 1 << 30})}, 10, "declares 1073741824 values"},
		{"many dictionary values", format.PageHeader{Type: format.DictionaryPage, UncompressedPageSize: 10, CompressedPageSize: 10,
			DictionaryPageHeader: thrift.New(format.DictionaryPageHeader{NumValues: -1})}, 10, "declares -1 values"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := page(c.hdr)
			file := append([]byte("PAR1"), h...)
			file = append(file, make([]byte, c.body)...)
			chunk := int64(len(file) - 4)
			file = append(file, "\x00\x00\x00\x00PAR1"...)
			rg := &format.RowGroup{NumRows: 3, Columns: []format.ColumnChunk{{MetaData: format.ColumnMetaData{DataPageOffset: 4, TotalCompressedSize: chunk}}}}
			err := checkRowGroupPages(bytes.NewReader(file), int64(len(file)), rg)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want %q, got %v", c.want, err)
			}
		})
	}
	// A chunk that points outside the file.
	rg := &format.RowGroup{Columns: []format.ColumnChunk{{MetaData: format.ColumnMetaData{DataPageOffset: 4, TotalCompressedSize: 1 << 40}}}}
	if err := checkRowGroupPages(bytes.NewReader(make([]byte, 64)), 64, rg); err == nil || !strings.Contains(err.Error(), "outside the file") {
		t.Fatalf("want a chunk outside the file, got %v", err)
	}
}

// Deep nesting in a footer is refused instead of recursing.
func TestParquetFooterDepth(t *testing.T) {
	var footer []byte
	for range 1000 {
		footer = append(footer, 0x1c) // field +1, type struct
	}
	w := &compactWalker{b: footer}
	if err := w.structure(0, 0, true); err == nil || !strings.Contains(err.Error(), "nested too deeply") {
		t.Fatalf("want nesting refused, got %v", err)
	}
	// And a valid file still reads end to end.
	data := writePQ(t, sampleRecs(250), 100)
	r, err := OpenParquet("ok.parquet", bytes.NewReader(data), int64(len(data)), nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ; ; n++ {
		if _, _, err := r.Read(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if n != 250 {
		t.Fatalf("read %d rows, want 250", n)
	}
}
