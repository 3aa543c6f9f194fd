package ingest

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/internal/testenv"
	"github.com/offload/offload/wal"
)

// TestIngestKfake consumes two topics with several partitions and checks the
// custody contract: every record in the WAL exactly once, in order, and the
// group's commits equal the WAL's high water + 1.
func TestIngestKfake(t *testing.T) {
	brokers := newCluster(t, kfake.SeedTopics(6, "orders"), kfake.SeedTopics(3, "payments"))
	w := openWAL(t, t.TempDir())
	defer w.Close()
	l := newLedger()
	p := newProducer(t, brokers)
	l.produce(t, p, "orders", 0, 6000)
	l.produce(t, p, "payments", 6000, 1500)
	if len(l.parts) != 9 {
		t.Fatalf("produced to %d partitions, want 9: keys do not spread", len(l.parts))
	}

	opts := baseOptions(t, brokers, w, "g1", "orders", "payments")
	r := start(t, opts)
	waitUntil(t, 20*time.Second, "the WAL to hold all records", func() bool { return walRecords(w) == l.total() })
	waitUntil(t, 5*time.Second, "Ready", r.in.Ready)
	// Records produced while running arrive too.
	l.produce(t, p, "orders", 7500, 500)
	waitUntil(t, 10*time.Second, "the WAL to hold the late records", func() bool { return walRecords(w) == l.total() })
	// The counters move just after the append that made the records
	// durable returns: wait for them too, or the read races the last one.
	waitUntil(t, 5*time.Second, "the stats to count the late records", func() bool { return r.in.Stats().Records >= uint64(l.total()) })
	s := r.in.Stats()
	r.stop(t)

	checkExactlyOnce(t, w, l)
	checkCommitted(t, brokers, "g1", w, l)
	if s.Records != uint64(l.total()) || s.Duplicates != 0 || s.Commits == 0 || s.Bytes == 0 {
		t.Errorf("stats %+v: want %d records, no duplicates, some commits and bytes", s, l.total())
	}
	if len(s.Partitions) != 9 {
		t.Errorf("stats list %d partitions, want 9", len(s.Partitions))
	}
	for _, ps := range s.Partitions {
		tp := wal.TopicPartition{Topic: ps.Topic, Partition: ps.Partition}
		want := l.parts[tp]
		if len(want) == 0 {
			continue
		}
		// The commit after the last batch may land after Stats was read,
		// so committed is at most the end and lag at least zero.
		end := want[len(want)-1].Offset + 1
		if ps.HighWatermark != end || ps.Committed > end || ps.Lag < 0 || ps.Lag != ps.HighWatermark-ps.Committed && ps.Committed >= 0 {
			t.Errorf("%s: stats %+v, want high watermark %d", tp, ps, end)
		}
	}
}

// TestIngestRestart stops and restarts Ingest twice while a producer keeps
// producing; everything lands exactly once and no record is fetched twice.
// The static variant restarts as the same group instance (KIP-345), which
// keeps its partitions across the restart instead of leaving the group.
func TestIngestRestart(t *testing.T) {
	for _, static := range []bool{false, true} {
		name := "dynamic"
		if static {
			name = "static"
		}
		t.Run(name, func(t *testing.T) { testRestart(t, static) })
	}
}

func testRestart(t *testing.T, static bool) {
	brokers := newCluster(t, kfake.SeedTopics(5, "orders"))
	dir := t.TempDir()
	w := openWAL(t, dir)
	l := newLedger()
	p := newProducer(t, brokers)

	const total = 30000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < total; i += 1000 {
			l.produce(t, p, "orders", i, 1000)
			time.Sleep(20 * time.Millisecond)
		}
	}()

	var dups, recs uint64
	for round := 0; round < 3; round++ {
		opts := baseOptions(t, brokers, w, "g-restart", "orders")
		if static {
			opts.InstanceID = "edge-01"
			opts.SessionTimeout = 10 * time.Second
		}
		r := start(t, opts)
		if round < 2 {
			// Stop mid-stream, once this round has taken some records.
			before := walRecords(w)
			waitUntil(t, 20*time.Second, "progress", func() bool { return walRecords(w) > before+2000 })
		} else {
			wg.Wait()
			waitUntil(t, 20*time.Second, "all records", func() bool { return walRecords(w) == total })
		}
		r.stop(t)
		s := r.in.Stats()
		dups += s.Duplicates
		recs += s.Records
		if round == 1 {
			// Reopen the WAL too, as a restart of the appliance would.
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			w = openWAL(t, dir)
		}
	}
	defer w.Close()
	checkExactlyOnce(t, w, l)
	checkCommitted(t, brokers, "g-restart", w, l)
	if dups != 0 || recs != total {
		t.Errorf("over three runs: %d records appended, %d duplicates dropped; want %d and 0 (a clean stop commits everything durable)", recs, dups, total)
	}
}

// TestIngestRedelivery simulates a crash between the WAL fsync and the Kafka
// commit: the WAL already holds records whose offsets were never committed
// (and, for one partition, a commit lags behind the WAL).
func TestIngestRedelivery(t *testing.T) {
	for _, tc := range []struct {
		name string
		// refetch disables the start-after-high-water adjustment, so
		// Kafka really re-delivers and the WAL must drop the duplicates.
		refetch bool
	}{
		{name: "start after high water"},
		{name: "refetch dropped by WAL", refetch: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			brokers := newCluster(t, kfake.SeedTopics(4, "orders"))
			w := openWAL(t, t.TempDir())
			defer w.Close()
			l := newLedger()
			p := newProducer(t, brokers)
			l.produce(t, p, "orders", 0, 8000)

			// "A previous Ingest": partition 0 wholly appended, the others
			// half, in batches cut at other boundaries than the fetches.
			pre := 0
			for tp, recs := range l.parts {
				n := len(recs) / 2
				if tp.Partition == 0 {
					n = len(recs)
				}
				for i := 0; i < n; i += 97 {
					var batch []wal.Record
					for _, r := range recs[i:min(i+97, n)] {
						batch = append(batch, wal.Record{Offset: r.Offset, Timestamp: r.Timestamp.UnixMilli(), Key: r.Key, Value: r.Value})
					}
					if _, err := w.Append(tp, batch); err != nil {
						t.Fatal(err)
					}
				}
				pre += n
			}
			// Partition 1 has an old commit below the WAL's high water.
			adm := kadm.NewClient(p)
			old := kadm.Offsets{}
			old.Add(kadm.Offset{Topic: "orders", Partition: 1, At: 10, LeaderEpoch: -1})
			if _, err := adm.CommitOffsets(context.Background(), "g-redeliver", old); err != nil {
				t.Fatal(err)
			}

			opts := baseOptions(t, brokers, w, "g-redeliver", "orders")
			if tc.refetch {
				opts.ExtraOpts = append(opts.ExtraOpts, kgo.AdjustFetchOffsetsFn(func(_ context.Context, o map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
					return o, nil
				}))
			}
			r := start(t, opts)
			waitUntil(t, 20*time.Second, "all records", func() bool { return walRecords(w) == l.total() })
			// Partition 0 gets nothing new: its commit must still come.
			if !tc.refetch {
				waitUntil(t, 10*time.Second, "partition 0's commit", func() bool {
					for _, ps := range r.in.Stats().Partitions {
						if ps.Partition == 0 && ps.Committed == w.HighWater(wal.TopicPartition{Topic: "orders", Partition: 0})+1 {
							return true
						}
					}
					return false
				})
			} else {
				waitUntil(t, 10*time.Second, "re-delivered records", func() bool { return r.in.Stats().Duplicates >= uint64(pre-10) })
			}
			r.stop(t)
			s := r.in.Stats()

			checkExactlyOnce(t, w, l)
			checkCommitted(t, brokers, "g-redeliver", w, l)
			if s.Records != uint64(l.total()-pre) {
				t.Errorf("appended %d records, want %d", s.Records, l.total()-pre)
			}
			// Without the adjustment, Kafka re-delivers everything from
			// the commits (0, or 10 for partition 1) and the WAL drops it.
			wantDups := uint64(0)
			if tc.refetch {
				wantDups = uint64(pre - 10)
			}
			if s.Duplicates != wantDups {
				t.Errorf("%d duplicates dropped, want %d", s.Duplicates, wantDups)
			}
		})
	}
}

// TestIngestUnreachable points Ingest at a closed port: Run keeps retrying
// without error, Ready stays false, the log names the broker (a few lines,
// not a flood), and cancel returns promptly.
func TestIngestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	w := openWAL(t, t.TempDir())
	defer w.Close()
	log, buf := testLogger(t)
	in, err := New(Options{Brokers: []string{addr}, Topics: []string{"orders"}, Group: "g", WAL: w, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()

	time.Sleep(2500 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Run returned %v while the broker is unreachable", err)
	default:
	}
	if in.Ready() {
		t.Error("Ready is true with no reachable broker")
	}
	out := buf.String()
	lines := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "cannot connect to Kafka broker") {
			lines++
			if !containsAll(line, addr, "kafka.brokers") {
				t.Errorf("log line does not name the broker and the option: %s", line)
			}
		}
	}
	if lines == 0 || lines > 2 {
		t.Errorf("%d 'cannot connect' log lines in 2.5 s, want 1 or 2 (rate-limited):\n%s", lines, out)
	}
	if n := strings.Count(out, "\n"); n > 10 {
		t.Errorf("%d log lines in 2.5 s: a flood:\n%s", n, out)
	}

	t0 := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5 s of cancel")
	}
	closed := make(chan struct{})
	go func() { in.Close(context.Background()); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return within 5 s")
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("stop took %v", d)
	}
}

// TestIngestWALFailure closes the WAL under a running Ingest: Run returns
// the append error and no offset past the WAL's content is committed.
func TestIngestWALFailure(t *testing.T) {
	brokers := newCluster(t, kfake.SeedTopics(3, "orders"))
	w := openWAL(t, t.TempDir())
	l := newLedger()
	p := newProducer(t, brokers)
	l.produce(t, p, "orders", 0, 3000)

	in, err := New(baseOptions(t, brokers, w, "g-fail", "orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(context.Background()) }()
	waitUntil(t, 20*time.Second, "all records", func() bool { return walRecords(w) == l.total() })
	hw := map[wal.TopicPartition]int64{}
	for tp := range l.parts {
		hw[tp] = w.HighWater(tp)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	l.produce(t, p, "orders", 3000, 300)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "WAL") {
			t.Fatalf("Run returned %v, want the WAL append error", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after the WAL failed")
	}
	cl, _ := kgo.NewClient(kgo.SeedBrokers(brokers...))
	defer cl.Close()
	offs, err := kadm.NewClient(cl).FetchOffsets(context.Background(), "g-fail")
	if err != nil {
		t.Fatal(err)
	}
	for tp, h := range hw {
		if o, ok := offs.Lookup(tp.Topic, tp.Partition); !ok || o.At != h+1 {
			t.Errorf("%s: committed %d (found %v), want %d: nothing past the WAL", tp, o.At, ok, h+1)
		}
	}
}

// TestIngestBackpressure: past the byte budget, fetching pauses, the WAL stops
// growing and the heap stays flat while the producer writes tens of MB;
// draining the WAL (read, then truncate, as the engine does) resumes
// ingest until every record has passed through exactly once.
//
// kfake runs in a child process (see TestMain) so that the records it
// stores do not count in this process's heap.
func TestIngestBackpressure(t *testing.T) {
	kf := startKfakeProcess(t, "orders", 4)
	brokers := []string{kf.addr}
	w := openWAL(t, t.TempDir())
	defer w.Close()

	const budget = 256 << 10
	var overBudgetCalls atomic.Int64
	opts := baseOptions(t, brokers, w, "g-bp", "orders")
	var logBuf *testenv.SyncBuffer
	opts.Logger, logBuf = testLogger(t)
	opts.FetchMaxBytes = 256 << 10
	opts.OverBudget = func() bool { overBudgetCalls.Add(1); return w.Bytes() > budget }
	kf.produce(t, 20000) // ~6 MB: more than the budget
	r := start(t, opts)

	waitUntil(t, 20*time.Second, "pause", func() bool { return r.in.Stats().Paused })
	time.Sleep(300 * time.Millisecond) // let a fetch in flight at the pause land in franz-go's buffer
	walRecs, walBytes := walRecords(w), w.Bytes()
	if walBytes > budget+8<<20 {
		t.Errorf("WAL holds %d bytes at the pause, budget %d: overshoot beyond one poll", walBytes, budget)
	}
	heap0 := heapAlloc()

	// The producer keeps producing ~45 MB while ingest is paused.
	kf.produce(t, 150000)
	time.Sleep(500 * time.Millisecond)
	heap1 := heapAlloc()
	if got := walRecords(w); got != walRecs || !r.in.Stats().Paused {
		t.Fatalf("while paused the WAL went from %d to %d records (paused %v)", walRecs, got, r.in.Stats().Paused)
	}
	t.Logf("heap while paused: %d -> %d bytes (%+d) while the producer wrote 150000 records", heap0, heap1, int64(heap1)-int64(heap0))
	if int64(heap1)-int64(heap0) > 8<<20 {
		t.Errorf("heap grew by %d bytes while paused: ingest buffers records", int64(heap1)-int64(heap0))
	}
	if overBudgetCalls.Load() < 5 {
		t.Errorf("OverBudget polled %d times while paused: the loop does not re-check", overBudgetCalls.Load())
	}

	// Drain: read and truncate as the engine would, until all passed.
	const total = 170000
	seen := map[wal.TopicPartition]int64{} // next expected offset
	cur := wal.Cursor{}
	deadline := time.Now().Add(30 * time.Second)
	n := 0
	for n < total {
		if time.Now().After(deadline) {
			t.Fatalf("drained %d of %d records in 30 s (stats %+v)", n, total, r.in.Stats())
		}
		next, err := w.Read(cur, 20000, func(e wal.Entry) error {
			for _, rec := range e.Records {
				if want := seen[e.TopicPartition]; rec.Offset != want {
					t.Fatalf("%s: read offset %d, want %d: a record is missing or duplicated", e.TopicPartition, rec.Offset, want)
				}
				seen[e.TopicPartition] = rec.Offset + 1
				n++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		cur = next
		if _, err := w.Truncate(cur); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	s := r.in.Stats()
	r.stop(t)
	if s.Pauses < 2 {
		t.Errorf("fetching paused %d times; draining in steps should pause it again and again", s.Pauses)
	}
	if logged := strings.Count(logBuf.String(), "paused fetching"); logged < 1 || logged > 2 {
		t.Errorf("%d pause log lines for %d pauses: want 1 or 2 (rate-limited)", logged, s.Pauses)
	}
	if n != total || s.Records != total || s.Duplicates != 0 {
		t.Errorf("drained %d records, ingest appended %d with %d duplicates; want %d, %d, 0", n, s.Records, s.Duplicates, total, total)
	}
	ends := kf.endOffsets(t)
	for tp, end := range ends {
		if seen[tp] != end {
			t.Errorf("%s: drained up to %d, partition ends at %d", tp, seen[tp], end)
		}
	}
}

// TestOptionsInvalid checks that each invalid option is rejected by New with
// an error naming it, and that the password never appears.
func TestOptionsInvalid(t *testing.T) {
	w := openWAL(t, t.TempDir())
	defer w.Close()
	certFile, keyFile, _ := writeTestPKI(t)
	valid := func() Options {
		return Options{Brokers: []string{"127.0.0.1:9092"}, Topics: []string{"orders"}, Group: "g", WAL: w}
	}
	const secret = "pa55-w0rd-never-shown"
	for _, tc := range []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"no brokers", func(o *Options) { o.Brokers = nil }, "kafka.brokers"},
		{"broker without port", func(o *Options) { o.Brokers = []string{"localhost"} }, "kafka.brokers"},
		{"broker bad port", func(o *Options) { o.Brokers = []string{"localhost:99999"} }, "kafka.brokers"},
		{"no topics", func(o *Options) { o.Topics = nil }, "kafka.topics"},
		{"bad topic", func(o *Options) { o.Topics = []string{"orders/eu"} }, "kafka.topics"},
		{"dot topic", func(o *Options) { o.Topics = []string{".."} }, "kafka.topics"},
		{"dot instance id", func(o *Options) { o.InstanceID = "." }, "kafka.client_id"},
		{"duplicate topic", func(o *Options) { o.Topics = []string{"a", "a"} }, "kafka.topics"},
		{"no group", func(o *Options) { o.Group = " " }, "kafka.group"},
		{"bad instance id", func(o *Options) { o.InstanceID = "edge 01" }, "kafka.client_id"},
		{"negative session timeout", func(o *Options) { o.SessionTimeout = -time.Second }, "kafka.session_timeout"},
		{"negative fetch", func(o *Options) { o.FetchMaxBytes = -1 }, "kafka.fetch_max_bytes"},
		{"tiny fetch", func(o *Options) { o.FetchMaxBytes = 100 }, "kafka.fetch_max_bytes"},
		{"bad mechanism", func(o *Options) { o.SASL = SASLOptions{Mechanism: "gssapi", Username: "u", Password: secret} }, "kafka.sasl.mechanism"},
		{"credentials without mechanism", func(o *Options) { o.SASL = SASLOptions{Username: "u", Password: secret} }, "kafka.sasl.mechanism"},
		{"no username", func(o *Options) { o.SASL = SASLOptions{Mechanism: "plain", Password: secret} }, "kafka.sasl.username"},
		{"no password", func(o *Options) { o.SASL = SASLOptions{Mechanism: "scram-sha-512", Username: "u"} }, "kafka.sasl.password"},
		{"ca file missing", func(o *Options) { o.TLS = TLSOptions{Enabled: true, CAFile: "/nonexistent/ca.pem"} }, "kafka.tls.ca_file"},
		{"ca file without TLS", func(o *Options) { o.TLS = TLSOptions{CAFile: certFile} }, "kafka.tls.ca_file"},
		{"cert without key", func(o *Options) { o.TLS = TLSOptions{Enabled: true, CertFile: certFile} }, "kafka.tls.key_file"},
		{"key without cert", func(o *Options) { o.TLS = TLSOptions{Enabled: true, KeyFile: keyFile} }, "kafka.tls.cert_file"},
		{"cert and key swapped", func(o *Options) { o.TLS = TLSOptions{Enabled: true, CertFile: keyFile, KeyFile: certFile} }, "kafka.tls.cert_file"},
		{"server name without TLS", func(o *Options) { o.TLS = TLSOptions{ServerName: "kafka"} }, "kafka.tls.server_name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := valid()
			tc.mod(&o)
			in, err := New(o)
			if err == nil {
				in.Close(context.Background())
				t.Fatalf("New accepted %+v", o)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %s", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
	// A non-PEM CA file (the check above used a missing one).
	o := valid()
	o.TLS = TLSOptions{Enabled: true, CAFile: writeFile(t, "not a certificate")}
	if _, err := New(o); err == nil || !strings.Contains(err.Error(), "kafka.tls.ca_file") || !strings.Contains(err.Error(), "no PEM") {
		t.Errorf("non-PEM CA file: %v", err)
	}
	o = valid()
	o.WAL = nil
	if _, err := New(o); err == nil {
		t.Error("New accepted a nil WAL")
	}
	for _, mech := range []string{"", "none", "PLAIN", "scram-sha-256", "SCRAM-SHA-512"} {
		o := valid()
		o.Logger = slog.New(slog.DiscardHandler)
		if mech != "" && mech != "none" {
			o.SASL = SASLOptions{Mechanism: mech, Username: "u", Password: secret}
		} else {
			o.SASL.Mechanism = mech
		}
		in, err := New(o)
		if err != nil {
			t.Errorf("mechanism %q rejected: %v", mech, err)
			continue
		}
		in.Close(context.Background())
	}
}

// TestIngestSASL authenticates with each mechanism against kfake, and checks
// that a wrong password is reported without ever being logged.
func TestIngestSASL(t *testing.T) {
	const pass, wrong = "s3cret-Pa55", "wr0ng-Pa55-zz"
	brokers := newCluster(t, kfake.SeedTopics(2, "orders"), kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "plainuser", pass),
		kfake.Superuser("SCRAM-SHA-256", "admin", pass),
		kfake.Superuser("SCRAM-SHA-512", "admin512", pass))
	l := newLedger()
	p := newProducer(t, brokers, kgo.SASL(saslFor(t, "scram-sha-256", "admin", pass)))
	l.produce(t, p, "orders", 0, 500)

	for _, tc := range []struct{ mech, user string }{{"plain", "plainuser"}, {"scram-sha-256", "admin"}, {"scram-sha-512", "admin512"}} {
		t.Run(tc.mech, func(t *testing.T) {
			w := openWAL(t, t.TempDir())
			defer w.Close()
			opts := baseOptions(t, brokers, w, "g-"+tc.mech, "orders")
			log, buf := testLogger(t)
			opts.Logger = log
			opts.SASL = SASLOptions{Mechanism: tc.mech, Username: tc.user, Password: pass}
			r := start(t, opts)
			waitUntil(t, 20*time.Second, "all records", func() bool { return walRecords(w) == l.total() })
			r.stop(t)
			checkExactlyOnce(t, w, l)
			if !strings.Contains(buf.String(), "SASL without TLS") {
				t.Error("no warning about SASL without TLS")
			}
			if strings.Contains(buf.String(), pass) {
				t.Error("the password appears in the log")
			}
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		w := openWAL(t, t.TempDir())
		defer w.Close()
		opts := baseOptions(t, brokers, w, "g-wrong", "orders")
		log, buf := testLogger(t)
		opts.Logger = log
		opts.SASL = SASLOptions{Mechanism: "scram-sha-256", Username: "admin", Password: wrong}
		r := start(t, opts)
		waitUntil(t, 10*time.Second, "an authentication error in the log", func() bool {
			return strings.Contains(buf.String(), "cannot connect to Kafka broker")
		})
		if r.in.Ready() || walRecords(w) != 0 {
			t.Errorf("ready %v with %d records under a wrong password", r.in.Ready(), walRecords(w))
		}
		r.stop(t)
		if strings.Contains(buf.String(), wrong) {
			t.Errorf("the password appears in the log:\n%s", buf.String())
		}
	})
}

func saslFor(t testing.TB, mech, user, pass string) saslMech {
	m, err := saslMechanism(SASLOptions{Mechanism: mech, Username: user, Password: pass})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestIngestTLS consumes over mutual TLS: the broker's certificate is
// checked against the CA file and the broker requires the client
// certificate.
func TestIngestTLS(t *testing.T) {
	certFile, keyFile, serverTLS := writeTestPKI(t)
	brokers := newCluster(t, kfake.SeedTopics(3, "orders"), kfake.TLS(serverTLS))
	clientTLS, err := tlsConfig(TLSOptions{Enabled: true, CAFile: certFile, CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	l := newLedger()
	p := newProducer(t, brokers, kgo.DialTLSConfig(clientTLS))
	l.produce(t, p, "orders", 0, 1000)

	w := openWAL(t, t.TempDir())
	defer w.Close()
	opts := baseOptions(t, brokers, w, "g-tls", "orders")
	opts.TLS = TLSOptions{Enabled: true, CAFile: certFile, CertFile: certFile, KeyFile: keyFile, ServerName: "localhost"}
	r := start(t, opts)
	waitUntil(t, 20*time.Second, "all records", func() bool { return walRecords(w) == l.total() })
	r.stop(t)
	checkExactlyOnce(t, w, l)

	// Without the client certificate the broker refuses the handshake.
	w2 := openWAL(t, t.TempDir())
	defer w2.Close()
	opts = baseOptions(t, brokers, w2, "g-tls2", "orders")
	opts.TLS = TLSOptions{Enabled: true, CAFile: certFile}
	r = start(t, opts)
	time.Sleep(time.Second)
	if r.in.Ready() || walRecords(w2) != 0 {
		t.Errorf("consumed without a client certificate (ready %v, %d records)", r.in.Ready(), walRecords(w2))
	}
	r.stop(t)
}

// TestIngestRebalance runs two appliances (two Ingests, two WALs) in one
// group while a producer keeps producing: the second joins mid-stream
// (cooperative rebalance moves partitions to it), then the first leaves
// (its partitions move too). Every offset lands in exactly one WAL: the
// commit before each revoke leaves no gap and no overlap.
func TestIngestRebalance(t *testing.T) {
	brokers := newCluster(t, kfake.SeedTopics(6, "orders"))
	wA, wB := openWAL(t, t.TempDir()), openWAL(t, t.TempDir())
	defer wA.Close()
	defer wB.Close()
	l := newLedger()
	p := newProducer(t, brokers)
	const total = 30000
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < total; i += 500 {
			l.produce(t, p, "orders", i, 500)
			select {
			case <-stop:
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	both := func() int { return walRecords(wA) + walRecords(wB) }
	a := start(t, baseOptions(t, brokers, wA, "g-rebalance", "orders"))
	waitUntil(t, 20*time.Second, "A's progress", func() bool { return walRecords(wA) > 3000 })
	b := start(t, baseOptions(t, brokers, wB, "g-rebalance", "orders"))
	waitUntil(t, 20*time.Second, "the partitions to split", func() bool {
		return len(a.in.Stats().Partitions) == 3 && len(b.in.Stats().Partitions) == 3
	})
	waitUntil(t, 20*time.Second, "B's progress", func() bool { return walRecords(wB) > 3000 })
	a.stop(t)
	waitUntil(t, 20*time.Second, "B to own all partitions", func() bool { return len(b.in.Stats().Partitions) == 6 })
	waitUntil(t, 30*time.Second, "all records", func() bool { return l.total() == total && both() >= total })
	b.stop(t)

	// Every produced offset in exactly one of the WALs.
	gotA, gotB := readAll(t, wA), readAll(t, wB)
	l.mu.Lock()
	defer l.mu.Unlock()
	for tp, want := range l.parts {
		inA := map[int64]bool{}
		for _, r := range gotA[tp] {
			inA[r.Offset] = true
		}
		inB := map[int64]bool{}
		var overlap []int64
		for _, r := range gotB[tp] {
			if inA[r.Offset] {
				overlap = append(overlap, r.Offset)
			}
			inB[r.Offset] = true
		}
		if len(overlap) > 0 {
			t.Errorf("%s: %d offsets (%d-%d) are in both WALs", tp, len(overlap), overlap[0], overlap[len(overlap)-1])
		}
		for _, r := range want {
			if !inA[r.Offset] && !inB[r.Offset] {
				t.Fatalf("%s offset %d is in neither WAL", tp, r.Offset)
			}
		}
		if len(gotA[tp])+len(gotB[tp]) != len(want) {
			t.Errorf("%s: %d+%d records in the WALs, %d produced", tp, len(gotA[tp]), len(gotB[tp]), len(want))
		}
	}
	if s := a.in.Stats(); s.Duplicates != 0 {
		t.Errorf("A dropped %d duplicates", s.Duplicates)
	}
	if s := b.in.Stats(); s.Duplicates != 0 {
		t.Errorf("B dropped %d duplicates", s.Duplicates)
	}
}
