package check

import "testing"

func TestArchiveCommandMustCallPGBWALPushWithPercentP(t *testing.T) {
	for cmdline, want := range map[string]bool{
		"pgb wal-push %p":                                 true,
		"/usr/local/bin/pgb wal-push %p":                  true,
		"'/opt/pgb 1/pgb' wal-push %p":                    true,
		"pgb --config /etc/pgb/main.yaml wal-push %p":     true,
		"pgb wal-push --repo s3://b/p %p":                 true,
		"/usr/local/bin/pgb wal-push --repo /r pg_wal/%f": false,
		"wal-g wal-push %p":                               false,
		"cp %p /mnt/archive/%f":                           false,
		"/bin/false":                                      false,
		"pgb wal-fetch %f %p":                             false,
	} {
		if got := CallsWALPush(cmdline); got != want {
			t.Errorf("CallsWALPush(%q) = %v, want %v", cmdline, got, want)
		}
	}
}
