package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestWALExport keeps records in the WAL (the engine waits an hour) and
// exports them: one JSON line per record with its coordinates, card
// numbers masked, and values that are not UTF-8 in base64.
func TestWALExport(t *testing.T) {
	brokers, cl := kfakeTopic(t, "shop", 1)
	dataDir := t.TempDir()
	cfg := testConfig(t, dataDir, brokers, "shop")
	body, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(body), "interval: 200ms", "interval: 1h", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfg)
	d.waitLog(t, "partitions assigned", 30*time.Second)
	var recs []*kgo.Record
	for i := 0; i < 50; i++ {
		recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i)), Value: fmt.Appendf(nil, `{"event_id":"e-%d","card_number":"4111 1111 1111 1111"}`, i)})
	}
	recs = append(recs, &kgo.Record{Value: []byte{0xff, 0xfe, 'x'}})
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // ingest appends and commits
	stopDaemon(t, d)

	out := filepath.Join(t.TempDir(), "wal.jsonl")
	code, _, errOut := runCLI("wal", "export", "--data-dir", dataDir, "--out", out)
	if code != 0 || !strings.Contains(errOut, "exported 51 records") {
		t.Fatalf("wal export: %d %s", code, errOut)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []walRecordJSON
	for sc := bufio.NewScanner(f); sc.Scan(); {
		var l walRecordJSON
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("not JSON: %s", sc.Text())
		}
		lines = append(lines, l)
	}
	for i, l := range lines[:50] {
		if l.Topic != "shop" || l.Offset != int64(i) || l.Key != fmt.Sprintf("k%d", i) || strings.Contains(l.Value, "4111 1111 1111 1111") ||
			!strings.Contains(l.Value, "1111") || l.KafkaTime.IsZero() || l.Appended.IsZero() {
			t.Fatalf("line %d: %+v", i, l)
		}
	}
	if last := lines[50]; last.Value != "" || last.ValueBase64 != base64.StdEncoding.EncodeToString([]byte{0xff, 0xfe, 'x'}) {
		t.Fatalf("non-UTF-8 value: %+v", last)
	}
}
