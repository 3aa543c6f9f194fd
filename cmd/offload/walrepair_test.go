package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/offload/offload/internal/appliance"
	"github.com/offload/offload/internal/deliverytest"
	"github.com/offload/offload/wal"
)

// TestWALRepairRandomBitFlips fills a WAL with valid events, flips one
// random bit in each of two to four random entries, and checks the operator's
// path end to end, for several seeds: `offload run` refuses to start and
// names `offload wal repair`; the repair moves exactly the damaged entries
// and says so; the daemon then starts, loads every kept event into the
// warehouse and none of the moved ones, and its metrics and status show
// the quarantine.
func TestWALRepairRandomBitFlips(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { testWALRepairBitFlips(t, seed) })
	}
}

func testWALRepairBitFlips(t *testing.T, seed uint64) {
	const (
		perEntry = 40
		entries  = 15 // per partition
	)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	dataDir := t.TempDir()
	w, err := wal.Open(appliance.WALDir(dataDir), wal.Options{MemTableSize: 1 << 20, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	eventID := func(p int32, off int64) string { return fmt.Sprintf("evt-%d-%05d", p, off) }
	start := time.Now().UTC().Add(-2 * time.Hour)
	for p := int32(0); p < 2; p++ {
		for e := 0; e < entries; e++ {
			recs := make([]wal.Record, perEntry)
			for i := range recs {
				off := int64(e*perEntry + i)
				v := fmt.Sprintf(`{"event_id":"%s","order_id":"ord-%d","event_type":"order_placed","store_id":"s-%d","amount":"%d.50","currency":"EUR","channel":"web","customer_email":"c%d@example.com","event_time":"%s"}`,
					eventID(p, off), off, off%5, off%300, off%50, start.Add(time.Duration(off)*time.Second).Format(time.RFC3339Nano))
				recs[i] = wal.Record{Offset: off, Timestamp: start.UnixMilli(), Value: []byte(v)}
			}
			if _, err := w.Append(wal.TopicPartition{Topic: "orders", Partition: p}, recs); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	// Flip one random bit of a few random entries, through Pebble, so the
	// damage is in the entries themselves (Pebble's own checksums hold).
	db, err := pebble.Open(appliance.WALDir(dataDir), &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		t.Fatal(err)
	}
	var keys [][]byte
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{1}, UpperBound: []byte{2}})
	if err != nil {
		t.Fatal(err)
	}
	for it.First(); it.Valid(); it.Next() {
		keys = append(keys, slices.Clone(it.Key()))
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2*entries {
		t.Fatalf("%d entry keys, want %d", len(keys), 2*entries)
	}
	damaged := map[string]bool{} // event ids of the damaged entries
	var flipped []string         // "p/first" of each damaged entry
	for _, i := range rng.Perm(len(keys))[:2+rng.IntN(3)] {
		v, closer, err := db.Get(keys[i])
		if err != nil {
			t.Fatal(err)
		}
		v = slices.Clone(v)
		closer.Close()
		pos := rng.IntN(len(v))
		v[pos] ^= 1 << rng.IntN(8)
		if err := db.Set(keys[i], v, pebble.Sync); err != nil {
			t.Fatal(err)
		}
		k := keys[i]
		p := int32(k[len(k)-12])<<24 | int32(k[len(k)-11])<<16 | int32(k[len(k)-10])<<8 | int32(k[len(k)-9])
		first := int64(0)
		for _, b := range k[len(k)-8:] {
			first = first<<8 | int64(b)
		}
		flipped = append(flipped, fmt.Sprintf("orders/%d entry at offset %d", p, first))
		for off := first; off < first+perEntry; off++ {
			damaged[eventID(p, off)] = true
		}
		t.Logf("seed %d: flipped bit at byte %d of the entry orders/%d@%d", seed, pos, p, first)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	brokers, _ := kfakeTopic(t, "orders", 2)
	srv := newWarehouse(t)
	cfg := testConfig(t, dataDir, brokers, "orders", warehouseYAML(srv))

	// The daemon refuses to start on the damage and says what to do.
	d := startDaemon(t, cfg, warehouseEnv)
	if code := d.wait(t, 60*time.Second); code == 0 {
		t.Fatal("offload run started on a damaged WAL")
	}
	logs := d.logs.String()
	if !strings.Contains(logs, "offload wal repair --data-dir "+dataDir) || !strings.Contains(logs, flipped[0]) {
		t.Fatalf("offload run's refusal does not name the damage and `offload wal repair --data-dir %s`:\n%s", dataDir, logs)
	}

	code, out, errOut := runCLI("wal", "repair", "--data-dir", dataDir)
	if code != 0 {
		t.Fatalf("wal repair: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("wal repair printed:\n%s", out)
	for _, f := range flipped {
		if !regexp.MustCompile(`(?m)^moved: ` + regexp.QuoteMeta(strings.Replace(f, " entry at offset ", " entry, offsets ", 1)) + `\.\.`).MatchString(out) {
			t.Errorf("wal repair does not report moving %s", f)
		}
	}
	kept := 2*entries*perEntry - len(damaged)
	want := fmt.Sprintf("repair: kept %d entries (%d records); moved %d entries (%d records) to %s/quarantine/wal-",
		2*entries-len(flipped), kept, len(flipped), len(damaged), dataDir)
	if !strings.Contains(out, want) {
		t.Fatalf("wal repair report lacks %q", want)
	}
	if code, out, _ := runCLI("wal", "verify", "--data-dir", dataDir); code != 0 {
		t.Fatalf("wal verify after repair: %d %s", code, out)
	}
	if code, out, _ := runCLI("wal", "repair", "--data-dir", dataDir); code != 0 || !strings.Contains(out, "the WAL is sound, nothing moved") {
		t.Fatalf("second wal repair: %d %s", code, out)
	}

	// The daemon starts, loads every kept event and none of the moved.
	d = startDaemon(t, cfg, warehouseEnv)
	waitRows(t, srv, d, kept, 90*time.Second)
	time.Sleep(2 * time.Second) // a moved record loaded late would show now
	ids := deliverytest.QueryStrings(t, srv.DB(), `SELECT EVENT_ID FROM PUBLIC.OFFLOAD_TRANSACTIONS`)
	if len(ids) != kept {
		t.Errorf("the warehouse holds %d rows, want the %d kept", len(ids), kept)
	}
	for _, id := range ids {
		if damaged[id] {
			t.Errorf("quarantined event %s reached the warehouse", id)
		}
	}

	base := "http://" + adminAddr(t, d)
	_, body := adminRequest(t, "GET", base+"/api/v1/status", "")
	var st struct {
		WAL struct {
			QuarantinedEntries int64  `json:"quarantined_entries"`
			QuarantinedRecords int64  `json:"quarantined_records"`
			QuarantineDir      string `json:"quarantine_dir"`
		} `json:"wal"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	if st.WAL.QuarantinedEntries != int64(len(flipped)) || st.WAL.QuarantinedRecords != int64(len(damaged)) || st.WAL.QuarantineDir != appliance.QuarantineDir(dataDir) {
		t.Errorf("status wal: %+v, want %d entries, %d records in %s", st.WAL, len(flipped), len(damaged), appliance.QuarantineDir(dataDir))
	}
	_, body = adminRequest(t, "GET", base+"/metrics", "")
	for _, m := range []string{fmt.Sprintf("offload_wal_quarantined_entries %d\n", len(flipped)), fmt.Sprintf("offload_wal_quarantined_records %d\n", len(damaged))} {
		if !strings.Contains(string(body), m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}
	stopDaemon(t, d)
}

// quietPebble drops the messages of the Pebble database the test opens to
// damage entries.
type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// TestWALRepairFlippedSSTableByte: a flipped byte in an sstable (Pebble's
// block checksum) stops `offload run` with the repair advice; `offload wal
// repair` moves the unreadable run, and the WAL verifies afterwards.
func TestWALRepairFlippedSSTableByte(t *testing.T) {
	dir := t.TempDir()
	fillWAL(t, dir, 5000)
	flipSSTableByte(t, dir)
	d := startDaemon(t, testConfig(t, dir, "127.0.0.1:1", "orders"))
	if code := d.wait(t, 60*time.Second); code == 0 {
		t.Fatal("offload run started on a damaged WAL")
	}
	if logs := d.logs.String(); !strings.Contains(logs, "offload wal repair --data-dir "+dir) || !strings.Contains(logs, "checksum mismatch") {
		t.Fatalf("offload run's refusal does not name the damage and the repair:\n%s", logs)
	}
	code, out, errOut := runCLI("wal", "repair", "--data-dir", dir)
	if code != 0 || !regexp.MustCompile(`(?m)^moved: orders/\d unreadable run, offsets \d+\.\.`).MatchString(out) {
		t.Fatalf("wal repair: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("wal repair printed:\n%s", out)
	if code, out, _ := runCLI("wal", "verify", "--data-dir", dir); code != 0 {
		t.Fatalf("wal verify after repair: %d %s", code, out)
	}
}

// TestWALRepairAdvice: damage the engine meets while running reaches the
// daemon wrapped in its read error and joined with the other stages'
// shutdown errors; it still gets the repair advice. Other errors pass
// unchanged.
func TestWALRepairAdvice(t *testing.T) {
	ce := &wal.CorruptionError{Topic: "orders", Partition: 1, FirstOffset: 560, Record: 3, Pos: 100, Reason: "record checksum mismatch"}
	runErr := errors.Join(fmt.Errorf("engine: cannot read the WAL from the cursor: %w", ce), errors.New("loader: stopped"))
	msg := appliance.WALRepairAdvice(runErr, "/var/lib/offload").Error()
	for _, want := range []string{"orders/1 entry at offset 560", "run `offload wal repair --data-dir /var/lib/offload`", "/var/lib/offload/quarantine"} {
		if !strings.Contains(msg, want) {
			t.Errorf("advice %q lacks %q", msg, want)
		}
	}
	interrupted := fmt.Errorf("wal: cannot open x: %w", wal.ErrRepairInterrupted)
	if msg := appliance.WALRepairAdvice(interrupted, "/d").Error(); !strings.Contains(msg, "offload wal repair --data-dir /d") {
		t.Errorf("an interrupted repair gets no advice: %q", msg)
	}
	if other := errors.New("kafka: no brokers"); appliance.WALRepairAdvice(other, "/d") != other {
		t.Error("an error without WAL damage was changed")
	}
}
