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

	"github.com/offload/offload/internal/testenv"
	"github.com/offload/offload/wal"
)

// TestKcatEndToEnd produces with kcat, a Kafka client independent of the
// one offload uses, to the real broker, runs `offload run` and checks that
// the appliance holds exactly what kcat reads back from the broker: every
// valid message once in the outbox, every malformed one once in the dead
// letters with its raw bytes.
func TestKcatEndToEnd(t *testing.T) {
	brokers := testenv.Brokers(t)
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
	now := time.Now().UTC().Format(time.RFC3339)
	for i := 0; i < n; i++ {
		if i%10 == 9 { // a malformed one: no event type, store or time
			fmt.Fprintf(&in, "ord-%d\t{\"event_id\":\"evt-%d\",\"amount\":\"%d.25\",\"currency\":\"EUR\"}\n", i%97, i, i)
			continue
		}
		fmt.Fprintf(&in, "ord-%d\t{\"event_id\":\"evt-%d\",\"event_type\":\"order_placed\",\"store_id\":\"s-%d\",\"amount\":\"%d.25\",\"currency\":\"EUR\",\"event_time\":\"%s\"}\n",
			i%97, i, i%5, i, now)
	}
	cmd := boundedCommand(t, 2*time.Minute, kcat, "-P", "-b", brokers, "-t", topic, "-K", "\t")
	cmd.Stdin = strings.NewReader(in.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat produce: %v\n%s", err, out)
	}

	dataDir := t.TempDir()
	d := startDaemon(t, testConfig(t, dataDir, brokers, topic))
	d.waitLog(t, "partitions assigned", 30*time.Second)
	waitCommitted(t, adm, topic, 60*time.Second)
	time.Sleep(2 * time.Second) // give the engine (engine.interval 200ms) time to consume; records it leaves are checked in the WAL
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := d.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("offload exited %d after SIGTERM", code)
	}

	// Read back with kcat too: the WAL must equal what the broker holds.
	out, err := boundedCommand(t, 2*time.Minute, kcat, "-C", "-b", brokers, "-t", topic, "-e", "-q", "-f", "%p %o %k %s\n").Output()
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

	// Every message kcat reads back is held exactly once by the appliance
	// (WAL, outbox or dead letters), as that very message.
	got := heldRecords(t, dataDir)
	places := map[string]int{}
	for k, msg := range want {
		var p int32
		var off int64
		fmt.Sscanf(k, "%d %d", &p, &off)
		h := got[wal.TopicPartition{Topic: topic, Partition: p}][off]
		if len(h) != 1 {
			t.Errorf("message %s is held %d times (%v), want once", k, len(h), h)
			continue
		}
		value := strings.SplitN(msg, " ", 2)[1]
		valid := strings.Contains(value, "event_type")
		switch {
		case h[0].where == "wal": // not consumed by the engine before the stop
			places["wal"]++
			if h[0].eventID != value {
				t.Errorf("message %s: the WAL holds %q, kcat read %s", k, h[0].eventID, value)
			}
		case h[0].where == "outbox" && valid:
			places["outbox"]++
			if !strings.Contains(value, `"`+h[0].eventID+`"`) {
				t.Errorf("message %s: outbox holds event %q, kcat read %s", k, h[0].eventID, value)
			}
		case strings.HasPrefix(h[0].eventID, "dlq:missing_field ") && !valid:
			places["dlq"]++
			if !strings.HasSuffix(h[0].eventID, " "+value) {
				t.Errorf("message %s: dead letter %q, kcat read %s", k, h[0].eventID, value)
			}
		default:
			t.Errorf("message %s (%s) held as %v", k, value, h[0])
		}
	}
	t.Logf("%d messages held exactly once: %v", n, places)
}
