package main

import (
	"os"
	"testing"
)

// TestGoMemoryDefaults: `offload run` sets the Go heap's soft limit and
// the collector's target to its defaults, and GOMEMLIMIT and GOGC, when
// set, win over them; /metrics shows what the runtime holds.
func TestGoMemoryDefaults(t *testing.T) {
	for _, tc := range []struct {
		name        string
		env         []string
		limit, gogc float64
	}{
		{"defaults", nil, defaultGoMemoryLimit, defaultGCPercent},
		{"from the environment", []string{"GOMEMLIMIT=512MiB", "GOGC=100"}, 512 << 20, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, v := range []string{"GOMEMLIMIT", "GOGC"} {
				t.Setenv(v, "") // restored after the test
				os.Unsetenv(v)
			}
			brokers, _ := kfakeTopic(t, "shop", 1)
			d := startDaemon(t, testConfig(t, t.TempDir(), brokers, "shop"), tc.env...)
			base := "http://" + adminAddr(t, d)
			if got := metricValue(t, base, "go_gc_gomemlimit_bytes"); got != tc.limit {
				t.Errorf("go_gc_gomemlimit_bytes = %v, want %v", got, tc.limit)
			}
			if got := metricValue(t, base, "go_gc_gogc_percent"); got != tc.gogc {
				t.Errorf("go_gc_gogc_percent = %v, want %v", got, tc.gogc)
			}
		})
	}
}
