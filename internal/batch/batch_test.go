package batch

import "testing"

func TestDrain(t *testing.T) {
	ch := make(chan int, 10)
	for i := 1; i <= 5; i++ {
		ch <- i
	}
	if b := Drain([]int{0}, ch, 3); len(b) != 3 || b[2] != 2 {
		t.Fatalf("bounded by max: %v", b)
	}
	if b := Drain(nil, ch, 10); len(b) != 3 || b[0] != 3 {
		t.Fatalf("stops when empty without waiting: %v", b)
	}
	ch <- 9
	close(ch)
	if b := Drain(nil, ch, 10); len(b) != 1 || b[0] != 9 {
		t.Fatalf("stops at a closed channel: %v", b)
	}
}
