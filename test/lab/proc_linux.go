package lab

import "syscall"

// sysProcAttr puts a service in its own process group (Ctrl-C reaches the lab only, which stops everything
// in order) and kills it if the lab dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
