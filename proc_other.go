//go:build !unix

package idem

import "os/exec"

func setProcessGroup(*exec.Cmd) {}

func killGroup(c *exec.Cmd) error {
	if c.Process == nil {
		return nil
	}
	return c.Process.Kill()
}
