//go:build unix

package openloop

import (
	"syscall"
	"time"
)

// sleepUntil sleeps in nanosleep(2) instead of time.Sleep. Go's timers
// wake from epoll_wait, whose timeout is whole milliseconds: at 2,000
// requests a second time.Sleep sent them in pairs, once a millisecond,
// each up to a millisecond late, and since latency counts from the
// scheduled time that lag was most of a direct request's p50. The kernel
// wakes a nanosleep within its timer slack (50 µs by default).
func sleepUntil(due time.Time) {
	for {
		d := time.Until(due)
		if d <= 0 {
			return
		}
		ts := syscall.NsecToTimespec(d.Nanoseconds())
		syscall.Nanosleep(&ts, nil) // EINTR: the loop sleeps what is left
	}
}
