//go:build unix

package idem

import (
	"os/exec"
	"syscall"
)

// setProcessGroup puts the command in its own process group, so a kill
// reaches the programs a job script starts, as a real crash of the job's
// container or host would.
func setProcessGroup(c *exec.Cmd) {
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

func killGroup(c *exec.Cmd) error {
	if c.Process == nil {
		return nil
	}
	return syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
}
