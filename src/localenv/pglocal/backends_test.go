package pglocal

import "testing"

// TestIsServerProcess: Kill must find every process a SIGKILLed postmaster leaves behind, the walsender among
// them, whose title ends in an LSN with a '/'; a new postmaster (or pg_rewind's crash recovery) on the same data
// directory refuses to start while one of them still holds the shared memory.
func TestIsServerProcess(t *testing.T) {
	for _, c := range []struct {
		cmdline string
		want    bool
	}{
		{"/usr/lib/postgresql/16/bin/postgres\x00-D\x00/tmp/x/data\x00-p\x005432\x00", true},
		{"postgres\x00--single\x00-F\x00-D\x00/tmp/x/data\x00template1\x00", true},
		{"postgres: checkpointer \x00\x00\x00", true},
		{"postgres: walsender postgres 127.0.0.1(35758) streaming 0/3018060\x00\x00", true},
		{"postgres: postgres bank 127.0.0.1(35766) idle\x00", true},
		{"postgres: lab: walsender postgres 127.0.0.1(1) streaming 1/A0\x00", true},
		{"/bin/bash\x00-c\x00cd /tmp/x/data\x00", false},
		{"/usr/lib/postgresql/16/bin/pg_rewind\x00-D\x00/tmp/x/data\x00", false},
		{"", false},
	} {
		if got := isServerProcess([]byte(c.cmdline)); got != c.want {
			t.Errorf("isServerProcess(%q) = %v, want %v", c.cmdline, got, c.want)
		}
	}
}
