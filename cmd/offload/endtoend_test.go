package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/internal/admin"
	"github.com/offload/offload/internal/deliverytest"
	"github.com/offload/offload/internal/testenv"
)

// TestDiskLossEndToEnd runs testDiskLoss on the in-process Kafka.
func TestDiskLossEndToEnd(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "shop"), kfake.GroupMinSessionTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testDiskLoss(t, strings.Join(c.ListenAddrs(), ","), "shop", "offload-e2e", 4)
}

// TestIntegrationRealKafkaDiskLossEndToEnd runs testDiskLoss on a real
// Kafka broker (scripts/kafka-broker.sh).
func TestIntegrationRealKafkaDiskLossEndToEnd(t *testing.T) {
	brokers := testenv.Brokers(t)
	name := fmt.Sprintf("disk-loss-%d", time.Now().UnixNano())
	adm := newAdmin(t, brokers)
	if _, err := adm.CreateTopic(context.Background(), 3, 1, nil, name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = adm.DeleteTopics(ctx, name)
		_, _ = adm.DeleteGroups(ctx, name)
	})
	testDiskLoss(t, brokers, name, name, 5)
}

// testDiskLoss runs `offload run` in kafka.delivery: end-to-end and, kills
// times while a producer writes, SIGKILLs it, deletes its whole data
// directory and starts it again empty. Every valid event is then in the
// warehouse exactly once (with dedupe.warehouse: merge), every window the
// watermark has passed equals its recomputation from the clean rows (those
// open at a loss too: their records are re-read whole), and once
// everything is loaded the group's offsets are committed to the end but
// for the records of the windows still open.
func testDiskLoss(t *testing.T, brokers, topic, group string, kills int) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 3))
	srv := newWarehouse(t)
	dataDir := t.TempDir()
	cfg := testConfig(t, dataDir, brokers, topic, warehouseYAML(srv), "dedupe:\n  warehouse: merge\n")
	body, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	body = []byte(strings.Replace(string(body), "  group: offload-test\n", "  group: "+group+"\n  delivery: end-to-end\n", 1))
	if err := os.WriteFile(cfg, body, 0o600); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := newAdmin(t, brokers)
	committed := func() int64 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		offs, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatalf("fetch offsets: %v", err)
		}
		var n int64
		offs.Each(func(o kadm.OffsetResponse) {
			if o.Topic == topic && o.At > 0 {
				n += o.At
			}
		})
		return n
	}
	rows := func() int {
		var n int
		if err := srv.DB().QueryRow(`SELECT count(*) FROM PUBLIC.OFFLOAD_TRANSACTIONS`).Scan(&n); err != nil {
			return 0 // the table is created by the first load
		}
		return n
	}

	want := map[string]bool{}
	const chunk = 3000
	skipped := 0
	countSkipped := func(d *daemonProc) {
		for _, m := range regexp.MustCompile(`rows already in the warehouse were not loaded again.* skipped=(\d+)`).FindAllStringSubmatch(d.logs.String(), -1) {
			n, _ := strconv.Atoi(m[1])
			skipped += n
		}
	}
	for i := range kills {
		d := startDaemon(t, cfg, warehouseEnv)
		d.waitLog(t, "partitions assigned", 30*time.Second)
		// Half the round's events, loaded; the kill lands while the
		// producer writes the other half, at a random moment: before or
		// after the load of what is re-read, before or after its commit.
		valid, _ := shopEvents(t, cl, i*chunk, chunk/2, rng)
		d.waitLog(t, "loader: batch loaded", 60*time.Second)
		kill := time.AfterFunc(time.Duration(rng.IntN(3000))*time.Millisecond, func() { _ = d.cmd.Process.Signal(syscall.SIGKILL) })
		more, _ := shopEvents(t, cl, i*chunk+chunk/2, chunk/2, rng)
		for id := range valid {
			want[id] = true
		}
		for id := range more {
			want[id] = true
		}
		d.wait(t, 30*time.Second)
		kill.Stop()
		countSkipped(d)
		t.Logf("kill %d: %d events produced, %d rows in the warehouse, %d records committed to Kafka", i+1, len(want), rows(), committed())
		// The disk is lost: the data directory goes whole.
		if err := os.RemoveAll(dataDir); err != nil {
			t.Fatal(err)
		}
	}
	if t.Failed() {
		return
	}

	// A last run, empty too, re-reads from the committed offsets.
	start := time.Now()
	d := startDaemon(t, cfg, warehouseEnv)
	waitRows(t, srv, d, len(want), 120*time.Second)
	// The windows of the last minutes stay open, and hold their records
	// back from Kafka, until newer events close them: an event an hour
	// later on each partition does. Once all is loaded, every offset but
	// those of these events (whose windows are open now) is committed.
	closer, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	var closing []*kgo.Record
	for p := range int32(3) {
		id := fmt.Sprintf("close-%d", p)
		closing = append(closing, &kgo.Record{Partition: p, Value: []byte(fmt.Sprintf(
			`{"event_id":"%s","order_id":"ord-%s","event_type":"order_placed","store_id":"s-close","amount":"1","currency":"EUR","channel":"web","event_time":"%s"}`,
			id, id, shopEpoch.Add(time.Duration(kills*chunk)*300*time.Millisecond+time.Hour).Format(time.RFC3339Nano)))})
		want[id] = true
	}
	if err := closer.ProduceSync(context.Background(), closing...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitRows(t, srv, d, len(want), 120*time.Second)
	statusURL := "http://" + adminAddr(t, d) + "/api/v1/status"
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var end int64
	ends.Each(func(o kadm.ListedOffset) { end += o.Offset })
	var st admin.Status
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		_, b := adminRequest(t, "GET", statusURL, "")
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatal(err)
		}
		done := st.Kafka.Delivery == "end-to-end" && len(st.Kafka.Partitions) == 3 && committed() == end-3
		for _, p := range st.Kafka.Partitions {
			done = done && p.Committed == p.HighWatermark-1
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("offsets not committed up to the closing events (%d records) within 60s of the last load: %d committed; %s", end-3, committed(), b)
		}
	}
	drained := time.Since(start)
	stopDaemon(t, d)
	countSkipped(d)
	deliverytest.CheckTables(t, srv.DB(), "PUBLIC.", want, -1, true)
	if c := committed(); c != end-3 {
		t.Errorf("%d records committed to Kafka after the last run, want all %d but the closing events", c, end-3)
	}
	t.Logf("%d kills with the data directory deleted; %d valid events, each in the warehouse once, and %s windows equal to their recomputation; "+
		"%d re-read rows kept out by the MERGE; the last run (empty) loaded the rest and committed every offset but the open windows' in %s; ledger rows %v",
		kills, len(want), deliverytest.QueryStrings(t, srv.DB(), `SELECT count(*) FROM PUBLIC.OFFLOAD_WINDOWS`)[0], skipped, drained.Round(time.Millisecond), deliverytest.QueryStrings(t, srv.DB(), `SELECT count(*) FROM PUBLIC.OFFLOAD_LOAD_LEDGER`))
}
