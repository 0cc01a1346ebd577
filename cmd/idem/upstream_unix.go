//go:build unix

package main

import (
	"net"
	"syscall"
)

// peerClosed reports whether the upstream has closed an idle connection
// (or sent something unasked), without blocking: one recv with MSG_PEEK.
// A connection that fails the check is not used, so a request is not
// sent into a socket the upstream already shut.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// Nothing to read (EAGAIN) is a live, idle connection; EOF (n == 0)
		// or any byte or error means it is of no more use.
		closed = rerr != syscall.EAGAIN && rerr != syscall.EWOULDBLOCK
		_ = n
		return true
	})
	return err != nil || closed
}
