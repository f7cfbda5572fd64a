//go:build !linux

package pglocal

import "syscall"

func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true}
}

func killGroup(*syscall.Credential, string) {}

func serverProcesses(string) []int { return nil }
