package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/txmesh/txmesh/src/localenv/proc"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times; it is 100 on every Linux architecture Go runs on.
const clockTicks = 100

// stat is the part of /proc/<pid>/stat the benchmark reads.
type stat struct {
	ppid                         int
	utime, stime, cutime, cstime uint64
}

func readStat(pid int) (stat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return stat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return stat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	// f[0] is field 3 (state) of proc(5): field k is f[k-3].
	var s stat
	s.ppid, _ = strconv.Atoi(f[1])
	s.utime, _ = strconv.ParseUint(f[11], 10, 64)
	s.stime, _ = strconv.ParseUint(f[12], 10, 64)
	s.cutime, _ = strconv.ParseUint(f[13], 10, 64)
	s.cstime, _ = strconv.ParseUint(f[14], 10, 64)
	return s, nil
}

// processCPU is the CPU time pid has used (all threads), in seconds; 0 when it is gone.
func processCPU(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	s, err := readStat(pid)
	if err != nil {
		return 0
	}
	return float64(s.utime+s.stime) / clockTicks
}

// treeCPU is the CPU time, in seconds, of a PostgreSQL postmaster and all its backends: the live children's
// own time plus the postmaster's, including the time of the children it has reaped (cutime/cstime), so that
// backends that exit between two readings are not lost.
func treeCPU(postmasters ...int) float64 {
	want := map[int]bool{}
	var total uint64
	for _, pm := range postmasters {
		if s, err := readStat(pm); err == nil {
			want[pm] = true
			total += s.utime + s.stime + s.cutime + s.cstime
		}
	}
	for pid := range proc.All() {
		s, err := readStat(pid)
		if err == nil && want[s.ppid] {
			total += s.utime + s.stime
		}
	}
	return float64(total) / clockTicks
}

// peakRSS is VmHWM (the peak resident set size) of pid, in MiB.
func peakRSS(pid int) (float64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			if err != nil {
				return 0, err
			}
			return kb / 1024, nil
		}
	}
	return 0, errors.New("no VmHWM")
}

// systemCPU returns the machine's busy and total CPU time from /proc/stat, in seconds.
func systemCPU() (busy, total float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	var sum, idle uint64
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		if i >= 8 { // guest and guest_nice are already counted in user and nice
			break
		}
		sum += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	return float64(sum-idle) / clockTicks, float64(sum) / clockTicks
}

// loadAvg is the 1-minute load average.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
