package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/engine"
	"github.com/offload/offload/internal/appliance"
	"github.com/offload/offload/internal/testenv"
	"github.com/offload/offload/wal"
)

// TestKillDuringIngest SIGKILLs `offload run` at random moments while a
// producer writes, many times over, against the in-process Kafka. After
// every kill no committed offset may be beyond what the WAL holds durably;
// at the end every produced record is held exactly once: still in the WAL
// or consumed by the engine into the outbox.
func TestKillDuringIngest(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "orders"), kfake.GroupMinSessionTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	killTest(t, strings.Join(c.ListenAddrs(), ","), "orders", 30, 30000)
}

// TestKillDuringIngestRealBroker is the same against a real Kafka broker.
func TestKillDuringIngestRealBroker(t *testing.T) {
	brokers := testenv.Brokers(t)
	topic := fmt.Sprintf("kill-%d", time.Now().UnixNano())
	adm := newAdmin(t, brokers)
	if _, err := adm.CreateTopic(context.Background(), 4, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	killTest(t, brokers, topic, 12, 20000)
}

func newAdmin(t *testing.T, brokers string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// produced maps (partition, offset) to the record value produced there.
type produced struct {
	mu   sync.Mutex
	recs map[wal.TopicPartition]map[int64]string
	n    int
}

func (p *produced) add(r *kgo.Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	tp := wal.TopicPartition{Topic: r.Topic, Partition: r.Partition}
	if p.recs[tp] == nil {
		p.recs[tp] = map[int64]string{}
	}
	p.recs[tp][r.Offset] = string(r.Value)
	p.n++
}

// produce writes total records of about 300 bytes in small synchronous
// batches, pacing itself so the kills land while records flow.
func produce(t *testing.T, brokers, topic string, total int, out *produced) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Error(err)
		return
	}
	defer cl.Close()
	pad := strings.Repeat("x", 160)
	for seq := 0; seq < total; {
		batch := make([]*kgo.Record, 0, 250)
		for ; len(batch) < cap(batch) && seq < total; seq++ {
			v := fmt.Sprintf(`{"event_id":"evt-%08d","order_id":"ord-%d","event_type":"order_placed","store_id":"s-%d","amount":"%d.50","currency":"EUR","channel":"web","event_time":"%s","pad":"%s"}`,
				seq, seq/3, seq%7, seq%500, time.Now().UTC().Format(time.RFC3339Nano), pad)
			batch = append(batch, &kgo.Record{Key: []byte(fmt.Sprintf("ord-%d", seq/3)), Value: []byte(v)})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res := cl.ProduceSync(ctx, batch...)
		cancel()
		if err := res.FirstErr(); err != nil {
			t.Errorf("produce: %v", err)
			return
		}
		for _, r := range res {
			out.add(r.Record)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func killTest(t *testing.T, brokers, topic string, kills, total int) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	dataDir := t.TempDir()
	cfg := testConfig(t, dataDir, brokers, topic)
	adm := newAdmin(t, brokers)

	out := &produced{recs: map[wal.TopicPartition]map[int64]string{}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); produce(t, brokers, topic, total, out) }()

	for i := 0; i < kills; i++ {
		d := startDaemon(t, cfg)
		time.Sleep(time.Duration(100+rng.IntN(900)) * time.Millisecond)
		if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		d.wait(t, 10*time.Second)
		checkCommittedDurable(t, adm, dataDir, topic, fmt.Sprintf("after kill %d", i+1))
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	// A last run drains everything, then stops cleanly on SIGTERM.
	d := startDaemon(t, cfg)
	d.waitLog(t, "partitions assigned", 30*time.Second)
	waitCommitted(t, adm, topic, 90*time.Second)
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := d.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("offload exited %d after SIGTERM", code)
	}
	checkCommittedDurable(t, adm, dataDir, topic, "after the final run")
	checkDelivered(t, dataDir, out)
	t.Logf("%d kills, %d records produced, each held exactly once (WAL, outbox or dead letters)", kills, out.n)
}

// checkCommittedDurable checks that no committed offset is beyond the WAL's
// durable high water. The daemon is not running, so the WAL can be opened.
func checkCommittedDurable(t *testing.T, adm *kadm.Client, dataDir, topic, when string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := adm.FetchOffsets(ctx, "offload-test")
	if err != nil {
		t.Fatalf("%s: fetch committed offsets: %v", when, err)
	}
	highWater := func(wal.TopicPartition) int64 { return -1 } // no WAL yet: nothing is durable
	w, err := wal.Open(appliance.WALDir(dataDir), wal.Options{ReadOnly: true, Logger: quietLogger()})
	switch {
	case err == nil:
		defer w.Close()
		highWater = w.HighWater
	case !errors.Is(err, wal.ErrNotFound):
		t.Fatalf("%s: open WAL: %v", when, err)
	}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic != topic || o.Err != nil {
			return
		}
		hw := highWater(wal.TopicPartition{Topic: o.Topic, Partition: o.Partition})
		if o.At > hw+1 {
			t.Errorf("%s: %s/%d committed offset %d is beyond the WAL's durable high water %d", when, o.Topic, o.Partition, o.At, hw)
		}
	})
	if w == nil {
		return // no WAL: nothing to verify
	}
	rep, err := w.Verify()
	if err != nil || len(rep.Corruptions) > 0 {
		t.Errorf("%s: WAL verify: %v %v", when, err, rep.Corruptions)
	}
}

// waitCommitted waits until the group has committed every partition's end
// offset.
func waitCommitted(t *testing.T, adm *kadm.Client, topic string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ends, err1 := adm.ListEndOffsets(ctx, topic)
		offs, err2 := adm.FetchOffsets(ctx, "offload-test")
		cancel()
		behind := -1
		if err1 == nil && err2 == nil {
			behind = 0
			ends.Each(func(e kadm.ListedOffset) {
				if o, ok := offs.Lookup(e.Topic, e.Partition); !ok || o.At < e.Offset {
					behind++
				}
			})
		}
		if behind == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group did not commit every end offset within %s (%d partitions behind; %v %v)", timeout, behind, err1, err2)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkDelivered checks that every produced record is held exactly once by
// the appliance, whichever stage has it now: still in the WAL, or consumed
// by the engine into the outbox (clean rows) or the dead-letter table. The
// daemon must be stopped.
func checkDelivered(t *testing.T, dataDir string, out *produced) {
	t.Helper()
	got := heldRecords(t, dataDir)
	total := 0
	for tp, offsets := range out.recs {
		for off, val := range offsets {
			h := got[tp][off]
			if len(h) != 1 {
				t.Errorf("%s offset %d is held %d times (%v), want once", tp, off, len(h), h)
				continue
			}
			if !strings.Contains(val, h[0].eventID) {
				t.Errorf("%s offset %d: held event %q (%s), produced %s", tp, off, h[0].eventID, h[0].where, val)
			}
		}
		total += len(offsets)
	}
	for tp, offs := range got {
		for off := range offs {
			if _, ok := out.recs[tp][off]; !ok {
				t.Errorf("%s offset %d is held but was never produced", tp, off)
			}
		}
	}
	if total != out.n {
		t.Errorf("produced map holds %d records, producer counted %d", total, out.n)
	}
}

// held is where one record is: "wal", "outbox" or "dlq:<code>".
type held struct {
	where   string
	eventID string // the event id (outbox), or the raw value (wal, dlq)
}

// heldRecords returns, per partition and offset, every place the appliance
// holds the record at that offset.
func heldRecords(t *testing.T, dataDir string) map[wal.TopicPartition]map[int64][]held {
	t.Helper()
	out := map[wal.TopicPartition]map[int64][]held{}
	add := func(tp wal.TopicPartition, off int64, h held) {
		if out[tp] == nil {
			out[tp] = map[int64][]held{}
		}
		out[tp][off] = append(out[tp][off], h)
	}
	w, err := wal.Open(appliance.WALDir(dataDir), wal.Options{ReadOnly: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	for cur := (wal.Cursor{}); ; {
		n := 0
		cur, err = w.Read(cur, 10000, func(e wal.Entry) error {
			for _, r := range e.Records {
				add(e.TopicPartition, r.Offset, held{"wal", string(r.Value)})
				n++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("duckdb", filepath.Join(dataDir, "engine.duckdb")+"?access_mode=read_only")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	withRows, err := engine.RowsSQL(context.Background(), db, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct{ where, sql string }{
		{"outbox", withRows + `SELECT source_topic, source_partition, source_offset, '', CAST(event_id AS BLOB) FROM outbox_rows`},
		{"dlq", `SELECT topic, "partition", "offset", code, raw FROM dlq`},
	} {
		rows, err := db.Query(q.sql)
		if err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
		for rows.Next() {
			var tp wal.TopicPartition
			var off int64
			var code string
			var b []byte
			if err := rows.Scan(&tp.Topic, &tp.Partition, &off, &code, &b); err != nil {
				t.Fatal(err)
			}
			if q.where == "dlq" {
				add(tp, off, held{q.where, "dlq:" + code + " " + string(b)})
			} else {
				add(tp, off, held{q.where, string(b)})
			}
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}
