package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/internal/testenv"
)

// offloadBin is the binary the subprocess tests run: $OFFLOAD_BIN when the
// test script built it already, else one build per test run.
var offloadBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "offload-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// The BigQuery test warehouse runs the emulator's program, which the
	// tests that run the command in-process find through the environment.
	if err := testenv.BigQueryEmulator(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	offloadBin = os.Getenv("OFFLOAD_BIN")
	if offloadBin == "" {
		offloadBin = filepath.Join(dir, "offload")
		out, err := exec.Command("go", "build", "-o", offloadBin, ".").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "cannot build offload: %v\n%s", err, out)
			return 1
		}
	}
	return m.Run()
}

// runCLI runs the command in-process and returns its exit code and output.
func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

// kfakeTopic starts an in-process Kafka cluster with topic (partitions
// partitions) and returns its address and a client producing to topic;
// both are closed when the test ends.
func kfakeTopic(t *testing.T, topic string, partitions int) (string, *kgo.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(partitions), topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := strings.Join(c.ListenAddrs(), ",")
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return brokers, cl
}

// testConfig writes a configuration for a test daemon and returns its path.
func testConfig(t *testing.T, dataDir, brokers, topic string, extra ...string) string {
	t.Helper()
	body := fmt.Sprintf(`appliance_id: test
data_dir: %s
disk_budget: 256MiB
shutdown_grace: 10s
log: {level: debug}
kafka:
  brokers: [%s]
  topics: [%s]
  group: offload-test
  session_timeout: 6s
engine:
  interval: 200ms
admin:
  listen: 127.0.0.1:0
`, dataDir, brokers, topic)
	body += strings.Join(extra, "\n")
	p := filepath.Join(t.TempDir(), "offload.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// daemonProc is an `offload run` subprocess.
type daemonProc struct {
	cmd  *exec.Cmd
	logs *testenv.SyncBuffer
	done chan error
}

func startDaemon(t *testing.T, cfg string, env ...string) *daemonProc {
	t.Helper()
	d := &daemonProc{cmd: exec.Command(offloadBin, "run", "--config", cfg), logs: &testenv.SyncBuffer{}, done: make(chan error, 1)}
	d.cmd.Stdout = d.logs
	d.cmd.Stderr = d.logs
	d.cmd.Env = append(os.Environ(), env...)
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			lines := strings.Split(strings.TrimSpace(d.logs.String()), "\n")
			if len(lines) > 40 {
				lines = lines[len(lines)-40:]
			}
			t.Logf("daemon pid %d log (last %d lines):\n%s", d.cmd.Process.Pid, len(lines), strings.Join(lines, "\n"))
		}
	})
	return d
}

// wait waits up to timeout for the process to exit and returns its exit code.
func (d *daemonProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-d.done:
		return d.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("offload did not exit within %s", timeout)
		return -1
	}
}

// waitLog waits until the daemon's log contains s.
func (d *daemonProc) waitLog(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(d.logs.String(), s) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("daemon log never contained %q", s)
}

// TestBinaryLeavesOutTheEmulator: the offload binary does not link the
// BigQuery emulator, which `offload demo|bench --warehouse bigquery` run as
// its own program (docs/PERFORMANCE.md, "The BigQuery emulator out of the
// binary").
func TestBinaryLeavesOutTheEmulator(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "github.com/goccy/bigquery-emulator") || strings.HasPrefix(pkg, "github.com/goccy/googlesql") {
			t.Errorf("cmd/offload links %s", pkg)
		}
	}
}
