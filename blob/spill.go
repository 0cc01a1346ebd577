package blob

import (
	"encoding/binary"
	"fmt"
	"os"

	"github.com/idemhq/idem"
)

// spill keeps a keyless load's input rows on disk, grouped by the folder
// they go to, so that a load of many partitions holds one folder's rows at a
// time instead of the whole input. Rows are buffered per folder and the
// buffers are appended in chunks to one temporary file, unlinked as soon as
// it is created (the kernel frees it when the process ends, even by
// SIGKILL). A folder's rows come back in input order. An input smaller than
// the buffer limit never touches the disk.
//
// Hand-written: the encoding is a few lines (the row's hash, then each
// canonical value as uvarint(len+1) and its bytes, 0 for NULL), and no
// library groups records by key with a bounded buffer.
type spill struct {
	f        *os.File
	size     int64
	bufs     map[string][]byte
	chunks   map[string][]spillChunk
	buffered int
	limit    int
}

type spillChunk struct {
	off int64
	n   int
}

// spillBuffer is how many bytes of encoded rows a spill holds in memory
// before writing them out.
const spillBuffer = 8 << 20

func newSpill(limit int) *spill {
	return &spill{bufs: map[string][]byte{}, chunks: map[string][]spillChunk{}, limit: limit}
}

func (s *spill) add(dir string, h idem.RowHash, row idem.Row) error {
	b := s.bufs[dir]
	n := len(b)
	b = binary.BigEndian.AppendUint64(b, h.Hi)
	b = binary.BigEndian.AppendUint64(b, h.Lo)
	for _, v := range row {
		if v.Null {
			b = append(b, 0)
			continue
		}
		b = binary.AppendUvarint(b, uint64(len(v.S))+1)
		b = append(b, v.S...)
	}
	s.bufs[dir] = b
	s.buffered += len(b) - n
	if s.buffered > s.limit {
		return s.flush()
	}
	return nil
}

// flush appends every folder's buffer to the file as one chunk each.
func (s *spill) flush() error {
	if s.f == nil {
		f, err := os.CreateTemp("", "idem-spill-*")
		if err != nil {
			return fmt.Errorf("spill the input to a temporary file: %w", err)
		}
		// Unlinked at once: nothing is left behind whatever happens.
		if err := os.Remove(f.Name()); err != nil {
			f.Close()
			return fmt.Errorf("spill the input to a temporary file: %w", err)
		}
		s.f = f
	}
	for dir, b := range s.bufs {
		if len(b) == 0 {
			continue
		}
		if _, err := s.f.WriteAt(b, s.size); err != nil {
			return fmt.Errorf("spill the input to a temporary file: %w", err)
		}
		s.chunks[dir] = append(s.chunks[dir], spillChunk{off: s.size, n: len(b)})
		s.size += int64(len(b))
		// Dropped, not reused: kept buffers would each hold on to the
		// largest size they ever reached, and together many times the
		// limit when the input comes folder after folder.
		delete(s.bufs, dir)
	}
	s.buffered = 0
	return nil
}

// rows returns the folder's rows of ncols columns, in input order, and
// forgets them. The values share one string per chunk.
func (s *spill) rows(dir string, ncols int) ([]hrow, error) {
	var out []hrow
	decode := func(data string) error {
		for len(data) > 0 {
			if len(data) < 16 {
				return fmt.Errorf("spill file: truncated row")
			}
			h := idem.RowHash{Hi: binary.BigEndian.Uint64([]byte(data[:8])), Lo: binary.BigEndian.Uint64([]byte(data[8:16]))}
			data = data[16:]
			row := make(idem.Row, ncols)
			for j := range row {
				n, k := uvarintString(data)
				if k <= 0 || uint64(len(data)-k)+1 < n {
					return fmt.Errorf("spill file: corrupt row")
				}
				data = data[k:]
				if n == 0 {
					row[j] = idem.Null
					continue
				}
				row[j] = idem.V(data[:n-1])
				data = data[n-1:]
			}
			out = append(out, hrow{row, h})
		}
		return nil
	}
	for _, c := range s.chunks[dir] {
		b := make([]byte, c.n)
		if _, err := s.f.ReadAt(b, c.off); err != nil {
			return nil, fmt.Errorf("read back the spilled input: %w", err)
		}
		if err := decode(string(b)); err != nil {
			return nil, err
		}
	}
	if err := decode(string(s.bufs[dir])); err != nil {
		return nil, err
	}
	delete(s.chunks, dir)
	delete(s.bufs, dir)
	return out, nil
}

// uvarintString is binary.Uvarint over a string, without copying it.
func uvarintString(s string) (uint64, int) {
	var x uint64
	var sh uint
	for i := 0; i < len(s) && i < binary.MaxVarintLen64; i++ {
		c := s[i]
		if c < 0x80 {
			return x | uint64(c)<<sh, i + 1
		}
		x |= uint64(c&0x7f) << sh
		sh += 7
	}
	return 0, -1
}

func (s *spill) Close() error {
	if s.f == nil {
		return nil
	}
	return s.f.Close()
}
