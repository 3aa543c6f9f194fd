package loader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/offload/offload/engine"
	"github.com/offload/offload/engine/event"
	"github.com/offload/offload/wal"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testOutbox is a real engine over a real WAL, with n sealed batches of
// rowsPer events each.
func testOutbox(t *testing.T, n, rowsPer int) *engine.Engine {
	t.Helper()
	return testOutboxOf(t, "lt", n, rowsPer)
}

// testOutboxOf is testOutbox for the appliance id appliance.
func testOutboxOf(t *testing.T, appliance string, n, rowsPer int) *engine.Engine {
	t.Helper()
	dir := t.TempDir()
	w, err := wal.Open(filepath.Join(dir, "wal"), wal.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	e, err := engine.Open(engine.Options{
		Dir: dir, ApplianceID: appliance, WAL: w, Logger: quietLogger(),
		Topics: map[string]event.Config{"orders": {HashKey: []byte("loader-test-key-0123")}},
		Seal:   engine.SealPolicy{Rows: int64(rowsPer), Bytes: 1 << 40, Age: time.Hour},
		// One micro-batch per sealed batch.
		BatchRecords: rowsPer,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	tp := wal.TopicPartition{Topic: "orders", Partition: 0}
	// Events 10 s apart, ending an hour ago, cycling through 4 window keys
	// (so windows hold one or two events): most minutes' windows close (the
	// watermark trails the newest event by 5 minutes) and are in the outbox.
	now := time.Now().UTC()
	first := now.Add(-time.Hour - time.Duration(n*rowsPer)*10*time.Second)
	for i := 0; i < n*rowsPer; i++ {
		v := fmt.Sprintf(`{"event_id":"e-%d","event_type":"order_placed","store_id":"s%d","amount":"%d.50","currency":"%s","channel":"web","event_time":"%s"}`,
			i, i%2, i, []string{"EUR", "USD"}[i/2%2], first.Add(time.Duration(i)*10*time.Second).Format(time.RFC3339Nano))
		if _, err := w.Append(tp, []wal.Record{{Offset: int64(i), Timestamp: now.UnixMilli(), Value: []byte(v)}}); err != nil {
			t.Fatal(err)
		}
	}
	stepAll(t, e)
	bs, err := e.SealedBatches()
	if err != nil || len(bs) != n {
		t.Fatalf("%d sealed batches (%v), want %d", len(bs), err, n)
	}
	return e
}

// stepAll runs e's micro-batches until the WAL holds nothing new.
func stepAll(t testing.TB, e *engine.Engine) {
	t.Helper()
	for {
		k, err := e.Step(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if k == 0 {
			return
		}
	}
}

// scriptSink is a warehouse in memory whose answers a test scripts: each
// call of Load takes the next entry of script ("" loads; "retry" and
// "permanent" fail without loading; "lost" loads, then fails as if the
// commit's answer was lost).
type scriptSink struct {
	mu       sync.Mutex
	script   []string
	ledger   map[string]int64 // batch → rows
	order    []string         // batches in the order they were loaded
	attempts int
	prepares int
}

var (
	errRetry     = errors.New("503 Service Unavailable")
	errPermanent = errors.New("SQL compilation error: invalid identifier 'AMOUNT'")
)

func newScriptSink(script ...string) *scriptSink {
	return &scriptSink{script: script, ledger: map[string]int64{}}
}

func (s *scriptSink) Prepare(context.Context) error {
	s.mu.Lock()
	s.prepares++
	s.mu.Unlock()
	return nil
}

func (s *scriptSink) Loaded(_ context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.ledger[id]
	return ok, nil
}

func (s *scriptSink) Load(_ context.Context, x engine.Export) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts++
	step := ""
	if len(s.script) > 0 {
		step, s.script = s.script[0], s.script[1:]
	}
	switch step {
	case "retry":
		return errRetry
	case "permanent":
		return errPermanent
	}
	if _, dup := s.ledger[x.ID]; dup {
		return fmt.Errorf("batch %s loaded twice", x.ID)
	}
	s.ledger[x.ID] = x.Rows
	s.order = append(s.order, x.ID)
	if step == "lost" {
		return errRetry
	}
	return nil
}

func (s *scriptSink) Classify(err error) Class {
	if errors.Is(err, errPermanent) {
		return Permanent
	}
	return Retryable
}

func (s *scriptSink) Close() error { return nil }

func (s *scriptSink) loaded() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.order)
}

// runUntil runs the loader until cond holds (bounded), then stops it.
func runUntil(t testing.TB, l *Loader, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("condition not met within 10s; status %+v", l.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := l.Status(); st.State != StateStopped {
		t.Fatalf("state after Run returned: %s", st.State)
	}
}

// runUntilOpen runs l until its circuit opens (bounded: 10 s) and
// returns its status then.
func runUntilOpen(l *Loader) Status {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for l.Status().State != StateOpen && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st := l.Status()
	cancel()
	<-done
	return st
}

// outboxEmpty tells whether e holds no sealed or parked batch.
func outboxEmpty(e *engine.Engine) func() bool {
	return func() bool {
		bs, _ := e.SealedBatches()
		return len(bs) == 0
	}
}

// shipAll runs a loader with opts until e's outbox holds no sealed batch.
func shipAll(t testing.TB, e *engine.Engine, opts Options) *Loader {
	t.Helper()
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, l, outboxEmpty(e))
	return l
}

func fastOptions(e Outbox, s Sink, dir string) Options {
	return Options{Sink: s, Outbox: e, Dir: dir, QuarantineDir: filepath.Join(dir, "quarantine"), Logger: quietLogger(),
		RetryBase: time.Millisecond, RetryMax: 4 * time.Millisecond,
		BreakerFailures: 3, BreakerCooldown: 20 * time.Millisecond, Poll: 5 * time.Millisecond}
}

func ids(bs []engine.BatchInfo) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.ID)
	}
	return out
}

func TestShipsEveryBatchOnceInOrder(t *testing.T) {
	for _, order := range []string{OldestFirst, NewestFirst} {
		t.Run(order, func(t *testing.T) {
			e := testOutbox(t, 4, 10)
			sealed, _ := e.SealedBatches()
			want := ids(sealed)
			if order == NewestFirst {
				slices.Reverse(want)
			}
			sink := newScriptSink()
			opts := fastOptions(e, sink, t.TempDir())
			opts.Order = order
			l, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			runUntil(t, l, func() bool { return len(sink.loaded()) == 4 })
			if got := sink.loaded(); !slices.Equal(got, want) {
				t.Fatalf("load order %v, want %v", got, want)
			}
			if bs, _ := e.SealedBatches(); len(bs) != 0 {
				t.Fatalf("batches left in the outbox: %v", ids(bs))
			}
			st := l.Status()
			if st.Loaded != 4 || st.Rows != 40 || st.BytesShipped <= 0 || st.Retries != 0 || st.LastError != "" {
				t.Fatalf("status %+v", st)
			}
			if files, _ := filepath.Glob(filepath.Join(opts.Dir, "*")); len(files) != 0 {
				t.Fatalf("exported files left: %v", files)
			}
		})
	}
}

// TestRetriesOpenTheCircuitAndRecover: retryable failures back off, open
// the circuit after BreakerFailures, a probe after the cooldown closes it,
// and every batch arrives once.
func TestRetriesOpenTheCircuitAndRecover(t *testing.T) {
	e := testOutbox(t, 3, 5)
	sink := newScriptSink("retry", "retry", "retry", "retry", "", "retry", "")
	l, err := New(fastOptions(e, sink, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	var sawOpen bool
	runUntil(t, l, func() bool {
		st := l.Status()
		sawOpen = sawOpen || (st.State == StateOpen && st.Circuit == CircuitOpen && !st.RetryAt.IsZero())
		return len(sink.loaded()) == 3
	})
	if !sawOpen {
		t.Fatal("the circuit never showed open")
	}
	st := l.Status()
	if st.Retries != 5 || st.Loaded != 3 || st.Circuit != CircuitClosed || st.Attempts != 0 || st.LastError != "" {
		t.Fatalf("status %+v", st)
	}
	if sink.attempts != 8 {
		t.Fatalf("%d load attempts, want 8", sink.attempts)
	}
}

// TestPermanentFailureParks: a refused batch is parked with its error,
// later batches go on; after the operator's retry it loads.
func TestPermanentFailureParks(t *testing.T) {
	e := testOutbox(t, 3, 5)
	sealed, _ := e.SealedBatches()
	sink := newScriptSink("permanent")
	l, err := New(fastOptions(e, sink, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, l, func() bool { return len(sink.loaded()) == 2 })
	bs, _ := e.SealedBatches()
	if len(bs) != 1 || bs[0].ID != sealed[0].ID || bs[0].State != engine.BatchParked || bs[0].Error != errPermanent.Error() {
		t.Fatalf("outbox after a permanent failure: %+v", bs)
	}
	if st := l.Status(); st.Parked != 1 || st.Loaded != 2 {
		t.Fatalf("status %+v", st)
	}
	if err := l.RetryParked(sealed[0].ID); err != nil {
		t.Fatal(err)
	}
	runUntil(t, l, func() bool { return len(sink.loaded()) == 3 })
	if bs, _ := e.SealedBatches(); len(bs) != 0 {
		t.Fatalf("left: %+v", bs)
	}
}

// TestLostCommitAnswer: the warehouse committed but the answer never came;
// the retry finds the batch in the ledger and does not load it again.
func TestLostCommitAnswer(t *testing.T) {
	e := testOutbox(t, 2, 5)
	sink := newScriptSink("lost")
	l := shipAll(t, e, fastOptions(e, sink, t.TempDir()))
	st := l.Status()
	if st.Loaded != 1 || st.AlreadyLoaded != 1 || st.Retries != 1 || len(sink.loaded()) != 2 {
		t.Fatalf("status %+v, loads %v", st, sink.loaded())
	}
}

// TestPauseAndShippingWindow: a paused loader and one outside its
// shipping windows load nothing; Resume and an open window let it go.
func TestPauseAndShippingWindow(t *testing.T) {
	e := testOutbox(t, 1, 5)
	sink := newScriptSink()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.Local)
	var mu sync.Mutex
	opts := fastOptions(e, sink, t.TempDir())
	opts.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	w, err := ParseShippingWindow("01:00-05:00")
	if err != nil {
		t.Fatal(err)
	}
	opts.ShippingWindows = []ShippingWindow{w}
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	l.Pause()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	waitState := func(state string) Status {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if st := l.Status(); st.State == state {
				return st
			}
			time.Sleep(2 * time.Millisecond)
		}
		t.Fatalf("never in state %s: %+v", state, l.Status())
		return Status{}
	}
	waitState(StatePaused)
	l.Resume()
	st := waitState(StateWindow)
	if want := time.Date(2026, 11, 28, 1, 0, 0, 0, time.Local); !st.RetryAt.Equal(want) {
		t.Fatalf("next window opens at %s, want %s", st.RetryAt, want)
	}
	if len(sink.loaded()) != 0 {
		t.Fatal("loaded outside the shipping window")
	}
	mu.Lock()
	now = time.Date(2026, 11, 28, 1, 30, 0, 0, time.Local)
	mu.Unlock()
	l.poke()
	deadline := time.Now().Add(5 * time.Second)
	for len(sink.loaded()) != 1 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil || len(sink.loaded()) != 1 {
		t.Fatalf("inside the window: %v, loaded %v", err, sink.loaded())
	}
}
