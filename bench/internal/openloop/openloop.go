// Package openloop paces the benchmarks' open-loop load: requests leave at
// fixed times whatever the earlier ones are doing, so a slow answer cannot
// hide the queue it causes (the closed-loop "coordinated omission").
package openloop

import (
	"sync"
	"time"
)

// Run calls fn n times, call i in its own goroutine at due = start + i/rate
// (at = due - start), and returns once all have returned, with the start.
func Run(n, rate int, fn func(i int, due time.Time, at time.Duration)) time.Time {
	interval := time.Second / time.Duration(rate)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		at := time.Duration(i) * interval
		due := start.Add(at)
		sleepUntil(due)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i, due, at)
		}()
	}
	wg.Wait()
	return start
}
