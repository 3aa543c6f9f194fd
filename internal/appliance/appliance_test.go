package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/internal/deliverytest"
	"github.com/offload/offload/internal/snowtest"
)

const (
	testTopic    = "shop"
	testPassword = "Wh-pass-2c81e0"
	testGrace    = 3 * time.Second
)

// rig is what one test appliance talks to: an in-process Kafka (kfake)
// with a producer, the Snowflake-protocol test server, and the appliance's
// configuration and log file.
type rig struct {
	t       *testing.T
	cl      *kgo.Client // produces to topic
	seeds   []string
	topic   string
	srv     *snowtest.Server
	cfgPath string
	logPath string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	k, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, testTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return newRigOn(t, k.ListenAddrs(), testTopic, "offload-appliance-test")
}

// newRigOn is newRig on the Kafka brokers, whose topic exists, consumed
// by group.
func newRigOn(t *testing.T, seeds []string, topic, group string) *rig {
	t.Helper()
	brokers := strings.Join(seeds, ",")
	cl := newTopicProducer(t, seeds, topic)
	srv, err := snowtest.New(snowtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	srv.AddUser(snowtest.User{Name: "OFFLOAD", Password: testPassword})
	dir := t.TempDir()
	// The warehouse's requests may hang far longer than the grace: the
	// shutdown, not the driver's timeout, must end them.
	body := fmt.Sprintf(`appliance_id: test
data_dir: %s
disk_budget: 256MiB
shutdown_grace: %s
log: {level: debug}
kafka:
  brokers: [%s]
  topics: [%s]
  group: %s
  session_timeout: 6s
engine:
  interval: 200ms
admin:
  listen: 127.0.0.1:0
outbox:
  seal_age: 1s
loader:
  retry_base: 20ms
  retry_max: 300ms
%s  login_timeout: 5s
  request_timeout: 60s
`, filepath.Join(dir, "data"), testGrace, brokers, topic, group, srv.WarehouseYAML("OFFLOAD"))
	r := &rig{t: t, cl: cl, seeds: seeds, topic: topic, srv: srv, cfgPath: filepath.Join(dir, "offload.yaml"), logPath: filepath.Join(dir, "offload.log")}
	if err := os.WriteFile(r.cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(r.logPath)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			t.Logf("appliance log (last lines):\n%s", strings.Join(lines[max(0, len(lines)-80):], "\n"))
		}
	})
	return r
}

// newTopicProducer returns a client of the brokers at seeds producing to
// topic, closed at the end of the test.
func newTopicProducer(t *testing.T, seeds []string, topic string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// running is an appliance whose Run is in progress.
type running struct {
	a    *Appliance
	stop context.CancelFunc
	done chan error // Run's error joined with Close's
}

// start opens the appliance on the rig's configuration and runs it until
// it is recovered and consuming.
func (r *rig) start(hook func(ctx context.Context, point string) error) *running {
	r.t.Helper()
	c, err := config.Load(r.cfgPath, append(os.Environ(), "OFFLOAD_WAREHOUSE_PASSWORD="+testPassword))
	if err != nil {
		r.t.Fatal(err)
	}
	f, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { _ = f.Close() })
	log := slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
	started := make(chan struct{})
	a, err := Open(context.Background(), c, log, Options{Version: "test", ConfigPath: r.cfgPath,
		Started: func(string) { close(started) }, EngineTestHook: hook})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	rn := &running{a: a, stop: stop, done: make(chan error, 1)}
	go func() {
		err := a.Run(ctx)
		rn.done <- errors.Join(err, a.Close())
	}()
	select {
	case <-started:
	case err := <-rn.done:
		r.t.Fatalf("the appliance stopped during its start: %v", err)
	case <-time.After(60 * time.Second):
		rn.stop()
		<-rn.done
		r.t.Fatal("the appliance did not start within 60s")
	}
	return rn
}

// shutdown stops the appliance, as SIGTERM does, and returns how long Run
// and Close took together.
func (rn *running) shutdown(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	rn.stop()
	select {
	case err := <-rn.done:
		if err != nil {
			t.Errorf("the appliance stopped with an error: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the appliance did not stop within 2 minutes")
	}
	return time.Since(start)
}

// produce sends valid events from..to-1 (one in ten twice, as a
// producer's retry does) and adds their ids to valid.
func (r *rig) produce(from, to int, valid map[string]bool) {
	r.t.Helper()
	epoch := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Hour)
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		id := fmt.Sprintf("evt-%06d", i)
		v := fmt.Sprintf(`{"event_id":"%s","order_id":"ord-%d","event_type":"order_placed","store_id":"s-%d","amount":"%d.%02d","currency":"EUR","channel":"web","event_time":"%s"}`,
			id, i, i%7, i%400, i%100, epoch.Add(time.Duration(i)*200*time.Millisecond).Format(time.RFC3339Nano))
		rec := &kgo.Record{Key: []byte(id), Value: []byte(v)}
		recs = append(recs, rec)
		if i%10 == 0 {
			recs = append(recs, &kgo.Record{Key: rec.Key, Value: rec.Value})
		}
		valid[id] = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		r.t.Fatal(err)
	}
}

// waitFor polls cond every 50 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within %s", what, timeout)
}

// TestShutdownWhileBusy stops the appliance while its engine is inside a
// long micro-batch (a test hook blocks inside its transaction, as a slow
// disk would) and a load hangs in the warehouse (at the ledger insert,
// inside the load's transaction). Run and Close return within
// shutdown_grace plus a second; the hung load committed nothing; the next
// start on the same data directory loads every valid event exactly once.
func TestShutdownWhileBusy(t *testing.T) {
	r := newRig(t)
	hang := r.srv.Inject(snowtest.Fault{Kind: snowtest.FaultHang, Hang: 10 * time.Minute, Times: 1 << 20,
		SQL: regexp.MustCompile(`^INSERT INTO OFFLOAD_LOAD_LEDGER`)})
	var block atomic.Bool
	blocked := make(chan struct{}, 1)
	hook := func(ctx context.Context, point string) error {
		if point != "rows" || !block.Load() {
			return nil
		}
		select {
		case blocked <- struct{}{}:
		default:
		}
		<-ctx.Done() // a micro-batch that takes longer than any grace
		return ctx.Err()
	}
	rn := r.start(hook)
	valid := map[string]bool{}
	r.produce(0, 1500, valid)
	waitFor(t, 30*time.Second, "a load reaching the ledger insert", func() bool { return hang.Hits() > 0 })
	block.Store(true)
	r.produce(1500, 3000, valid)
	select {
	case <-blocked:
	case <-time.After(30 * time.Second):
		t.Fatal("no micro-batch reached the blocking hook")
	}

	took := rn.shutdown(t)
	t.Logf("shutdown with the engine and the warehouse stuck took %s (shutdown_grace %s)", took, testGrace)
	if took > testGrace+time.Second {
		t.Errorf("shutdown took %s, want at most shutdown_grace (%s) plus 1s", took, testGrace)
	}
	if took < testGrace {
		t.Errorf("shutdown took %s, less than the grace the stuck micro-batch was given (%s)", took, testGrace)
	}
	if n := deliverytest.QueryStrings(t, r.srv.DB(), `SELECT count(*) FROM PUBLIC.OFFLOAD_LOAD_LEDGER`); n[0] != "0" {
		t.Fatalf("the interrupted load committed: %v ledger rows", n)
	}
	log, _ := os.ReadFile(r.logPath)
	if !strings.Contains(string(log), "micro-batch still running after shutdown_grace; interrupted") {
		t.Error("the log does not say the micro-batch was interrupted")
	}

	// The next start redoes the interrupted micro-batch and the load.
	r.srv.ClearFaults()
	rn = r.start(nil)
	waitFor(t, 60*time.Second, fmt.Sprintf("%d events in the warehouse", len(valid)), func() bool {
		n := deliverytest.QueryStrings(t, r.srv.DB(), `SELECT count(*) FROM PUBLIC.OFFLOAD_TRANSACTIONS`)
		return n[0] == fmt.Sprint(len(valid))
	})
	rn.shutdown(t)
	deliverytest.CheckTables(t, r.srv.DB(), "PUBLIC.", valid, -1, true)
}
