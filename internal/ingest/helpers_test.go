package ingest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/internal/testenv"
	"github.com/offload/offload/wal"
)

// testLogger is a logger into a buffer whose content is printed when the
// test fails (or OFFLOAD_TEST_LOG is set).
func testLogger(t testing.TB) (*slog.Logger, *testenv.SyncBuffer) {
	buf := &testenv.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("OFFLOAD_TEST_LOG") != "" {
			out := buf.String()
			if len(out) > 20000 {
				out = "...\n" + out[len(out)-20000:]
			}
			t.Logf("ingest log:\n%s", out)
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo})), buf
}

func newCluster(t testing.TB, opts ...kfake.Opt) []string {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func openWAL(t testing.TB, dir string) *wal.WAL {
	t.Helper()
	w, err := wal.Open(dir, wal.Options{
		MemTableSize: 4 << 20,
		Fatal:        func(err error) { panic(fmt.Sprintf("wal fatal: %v", err)) },
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// eventJSON is a ~300-byte e-commerce event, unique per seq.
func eventJSON(seq int) []byte {
	return fmt.Appendf(nil, `{"event_id":"evt-%010d","order_id":"ord-%08d","event_type":"order_placed","store_id":"s-%03d",`+
		`"customer_id":"c-%07d","amount":"%d.%02d","currency":"EUR","payment_method":"card","channel":"web",`+
		`"country":"DE","items":[{"sku":"SKU-%05d","qty":%d,"unit_price":"19.99"}],"event_time":"2025-11-25T12:00:00.000Z"}`,
		seq, seq/3, seq%211, seq%9973, seq%500, seq%100, seq%7919, 1+seq%5)
}

func newProducer(t testing.TB, brokers []string, extra ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ProducerBatchMaxBytes(1 << 20)}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// ledger remembers what was produced, per partition, in offset order.
type ledger struct {
	mu    sync.Mutex
	parts map[wal.TopicPartition][]*kgo.Record
	n     int
}

func newLedger() *ledger { return &ledger{parts: map[wal.TopicPartition][]*kgo.Record{}} }

// produce writes n records with sequence numbers from..from+n-1 to topic,
// keyed by order id so they spread over the partitions, and records them.
func (l *ledger) produce(t testing.TB, cl *kgo.Client, topic string, from, n int) {
	t.Helper()
	const chunk = 2000
	for base := from; base < from+n; base += chunk {
		m := min(chunk, from+n-base)
		recs := make([]*kgo.Record, m)
		for i := range recs {
			seq := base + i
			recs[i] = &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "ord-%08d", seq/3), Value: eventJSON(seq)}
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Errorf("produce: %v", err)
			return
		}
		l.add(recs)
	}
}

func (l *ledger) add(recs []*kgo.Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range recs {
		tp := wal.TopicPartition{Topic: r.Topic, Partition: r.Partition}
		l.parts[tp] = append(l.parts[tp], r)
		l.n++
	}
}

func (l *ledger) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// walRecords is the number of records the WAL holds.
func walRecords(w *wal.WAL) int {
	n := 0
	for _, s := range w.Stats() {
		n += int(s.Records)
	}
	return n
}

// readAll reads every record the WAL holds, per partition.
func readAll(t testing.TB, w *wal.WAL) map[wal.TopicPartition][]wal.Record {
	t.Helper()
	got := map[wal.TopicPartition][]wal.Record{}
	cur := wal.Cursor{}
	for {
		n := 0
		next, err := w.Read(cur, 10000, func(e wal.Entry) error {
			got[e.TopicPartition] = append(got[e.TopicPartition], e.Records...)
			n += len(e.Records)
			return nil
		})
		if err != nil {
			t.Fatalf("wal read: %v", err)
		}
		cur = next
		if n == 0 {
			return got
		}
	}
}

// checkExactlyOnce checks that the WAL holds every produced record exactly
// once, in offset order per partition, with its key, value and timestamp,
// and nothing else.
func checkExactlyOnce(t testing.TB, w *wal.WAL, l *ledger) {
	t.Helper()
	got := readAll(t, w)
	l.mu.Lock()
	defer l.mu.Unlock()
	for tp := range got {
		if _, ok := l.parts[tp]; !ok {
			t.Errorf("WAL holds %d records of %s, which was never produced to", len(got[tp]), tp)
		}
	}
	for tp, want := range l.parts {
		recs := got[tp]
		if len(recs) != len(want) {
			t.Errorf("%s: WAL holds %d records, produced %d", tp, len(recs), len(want))
		}
		for i := 0; i < min(len(recs), len(want)); i++ {
			g, p := recs[i], want[i]
			if g.Offset != p.Offset || !bytes.Equal(g.Key, p.Key) || !bytes.Equal(g.Value, p.Value) || g.Timestamp != p.Timestamp.UnixMilli() {
				t.Fatalf("%s: WAL record %d is offset %d key %q ts %d, produced offset %d key %q ts %d (values equal: %v)",
					tp, i, g.Offset, g.Key, g.Timestamp, p.Offset, p.Key, p.Timestamp.UnixMilli(), bytes.Equal(g.Value, p.Value))
			}
		}
		if hw := w.HighWater(tp); len(want) > 0 && hw != want[len(want)-1].Offset {
			t.Errorf("%s: WAL high water %d, last produced offset %d", tp, hw, want[len(want)-1].Offset)
		}
	}
}

// checkCommitted checks that the group's committed offset of every
// partition produced to equals the WAL's high water + 1.
func checkCommitted(t testing.TB, brokers []string, group string, w *wal.WAL, l *ledger) {
	t.Helper()
	offs := fetchCommitted(t, brokers, group)
	l.mu.Lock()
	defer l.mu.Unlock()
	for tp := range l.parts {
		o, ok := offs.Lookup(tp.Topic, tp.Partition)
		hw := w.HighWater(tp)
		switch {
		case !ok || o.Err != nil:
			t.Errorf("%s: no committed offset (err %v), WAL high water %d", tp, o.Err, hw)
		case o.At != hw+1:
			t.Errorf("%s: committed offset %d, WAL high water %d: want %d", tp, o.At, hw, hw+1)
		}
	}
}

// running is an Ingest being Run in a goroutine.
type running struct {
	in     *Ingest
	cancel context.CancelFunc
	done   chan error
}

func start(t testing.TB, opts Options) *running {
	t.Helper()
	in, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{in: in, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- in.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run, checks it returns nil promptly, and closes the client.
// It is idempotent.
func (r *running) stop(t testing.TB) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("Run did not return within 15s of cancel")
	}
	r.in.Close(context.Background())
}

func waitUntil(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func baseOptions(t testing.TB, brokers []string, w *wal.WAL, group string, topics ...string) Options {
	log, _ := testLogger(t)
	return Options{
		Brokers: brokers,
		Topics:  topics,
		Group:   group,
		WAL:     w,
		Logger:  log,
		ExtraOpts: []kgo.Opt{
			kgo.FetchMaxWait(200 * time.Millisecond),
		},
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// createTestTopic creates topic with partitions partitions (replication 1)
// through adm; the topic and group are deleted when the test ends.
func createTestTopic(t testing.TB, adm *kadm.Client, topic, group string, partitions int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := adm.CreateTopic(ctx, partitions, 1, nil, topic); err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = adm.DeleteTopics(ctx, topic)
		_, _ = adm.DeleteGroups(ctx, group)
	})
}

// fetchCommitted returns the group's committed offsets.
func fetchCommitted(t testing.TB, brokers []string, group string) kadm.OffsetResponses {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("fetch offsets: %v", err)
	}
	return offs
}
