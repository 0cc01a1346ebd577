package idem

import (
	"os/exec"
	"syscall"
)

// setDeathSignal kills the command when idem dies: a holder killed with
// SIGKILL must not leave its command running while the lease expires and
// another run starts it again.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
