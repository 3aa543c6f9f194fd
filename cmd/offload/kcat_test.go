package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/offload/offload/internal/kafkatest"
	"github.com/offload/offload/wal"
)

// TestKcatEndToEnd produces with kcat, a Kafka client independent of the
// one offload uses, to the real broker, runs `offload run` and checks that
// the WAL holds exactly what kcat produced: every message once, in order
// per partition, with its key.
func TestKcatEndToEnd(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("kcat is missing in CI: scripts/setup.sh installs it")
		}
		t.Skip("kcat is not installed: run scripts/setup.sh")
	}
	topic := fmt.Sprintf("kcat-%d", time.Now().UnixNano())
	adm := newAdmin(t, brokers)
	if _, err := adm.CreateTopic(context.Background(), 3, 1, nil, topic); err != nil {
		t.Fatal(err)
	}

	const n = 3000
	var in strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&in, "ord-%d\t{\"event_id\":\"evt-%d\",\"amount\":\"%d.25\",\"currency\":\"EUR\"}\n", i%97, i, i)
	}
	cmd := exec.Command(kcat, "-P", "-b", brokers, "-t", topic, "-K", "\t")
	cmd.Stdin = strings.NewReader(in.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat produce: %v\n%s", err, out)
	}

	dataDir := t.TempDir()
	d := startDaemon(t, testConfig(t, dataDir, brokers, topic))
	d.waitLog(t, "partitions assigned", 30*time.Second)
	waitCommitted(t, adm, topic, 60*time.Second)
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := d.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("offload exited %d after SIGTERM", code)
	}

	// Read back with kcat too: the WAL must equal what the broker holds.
	out, err := exec.Command(kcat, "-C", "-b", brokers, "-t", topic, "-e", "-q", "-f", "%p %o %k %s\n").Output()
	if err != nil {
		t.Fatalf("kcat consume: %v", err)
	}
	want := map[string]string{} // "partition offset" -> "key value"
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(line, " ", 4)
		want[f[0]+" "+f[1]] = f[2] + " " + f[3]
	}
	if len(want) != n {
		t.Fatalf("kcat read back %d messages, produced %d", len(want), n)
	}

	w, err := wal.Open(walDir(dataDir), wal.Options{ReadOnly: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	got := 0
	last := map[int32]int64{}
	for cur := (wal.Cursor{}); ; {
		read := 0
		cur, err = w.Read(cur, 1000, func(e wal.Entry) error {
			for _, r := range e.Records {
				k := fmt.Sprintf("%d %d", e.Partition, r.Offset)
				if want[k] != string(r.Key)+" "+string(r.Value) {
					return fmt.Errorf("WAL %s holds %q %q, kcat says %q", k, r.Key, r.Value, want[k])
				}
				if prev, ok := last[e.Partition]; ok && r.Offset <= prev {
					return fmt.Errorf("partition %d: offset %d after %d", e.Partition, r.Offset, prev)
				}
				last[e.Partition] = r.Offset
				delete(want, k)
				got++
				read++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if read == 0 {
			break
		}
	}
	if got != n || len(want) != 0 {
		t.Fatalf("WAL holds %d of %d messages; %d missing", got, n, len(want))
	}
}
