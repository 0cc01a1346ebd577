package main

import (
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/idemhq/idem"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress counts records as the load reads them and, when stderr is a
// terminal and the load has run for a second, shows a bar with rows and
// rate. Short loads and pipes get nothing extra.
type progress struct {
	idem.RecordReader
	rows  atomic.Int64
	bar   atomic.Pointer[progressbar.ProgressBar]
	timer *time.Timer
	last  int64
}

// newProgress wraps rr; inputBytes is the size of the input files (0 when
// unknown, as for a query), shown beside the row count and rate.
func newProgress(w io.Writer, rr idem.RecordReader, inputBytes int64) *progress {
	p := &progress{RecordReader: rr}
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return p
	}
	p.timer = time.AfterFunc(time.Second, func() {
		bar := progressbar.NewOptions64(-1,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(describeInput(inputBytes)),
			progressbar.OptionSetItsString("rows"),
			progressbar.OptionShowIts(),
			progressbar.OptionShowCount(),
			progressbar.OptionSpinnerType(14),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
		_ = bar.Add64(p.rows.Load())
		p.bar.Store(bar)
	})
	return p
}

func (p *progress) Read() ([]idem.Value, idem.Pos, error) {
	rec, pos, err := p.RecordReader.Read()
	if err == nil {
		n := p.rows.Add(1)
		// Touch the bar every 4096 rows: cheap enough for the hot path.
		if n&4095 == 0 {
			if bar := p.bar.Load(); bar != nil {
				_ = bar.Add64(n - p.last)
				p.last = n
			}
		}
	}
	return rec, pos, err
}

func (p *progress) finish() {
	if p.timer != nil {
		p.timer.Stop()
	}
	if bar := p.bar.Load(); bar != nil {
		_ = bar.Finish()
	}
}

func describeInput(n int64) string {
	if n <= 0 {
		return "loading"
	}
	return "loading " + humanize.Bytes(uint64(n))
}
