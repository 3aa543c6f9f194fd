package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestDLQCommands runs the pipeline with a mapping that names the wrong
// amount field, so every record is dead-lettered; lists and exports them;
// then replays them with the corrected mapping and finds them accepted,
// still kept (and marked replayed) in the dead-letter table.
func TestDLQCommands(t *testing.T) {
	brokers, cl := kfakeTopic(t, "shop", 2)
	const n = 20
	now := time.Now().UTC().Format(time.RFC3339)
	var recs []*kgo.Record
	for i := 0; i < n; i++ {
		v := fmt.Sprintf(`{"id":"e-%d","type":"order_placed","store_id":"s1","total_price":"%d.10","currency":"usd","event_time":"%s","customer_email":"Jane.Doe%d@example.com","card_number":"4111 1111 1111 1111"}`, i, i+1, now, i)
		recs = append(recs, &kgo.Record{Value: []byte(v)})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	dataDir := t.TempDir()
	mapping := func(amountField string) string {
		return fmt.Sprintf("topics:\n  shop:\n    fields: {event_id: id, event_type: type, amount: %s}\n", amountField)
	}
	wrong := testConfig(t, dataDir, brokers, "shop", mapping("price"))
	d := startDaemon(t, wrong)
	d.waitLog(t, "partitions assigned", 30*time.Second)
	time.Sleep(2 * time.Second) // the engine (interval 200ms) consumes what ingest took
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := d.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}

	code, out, errOut := runCLI("dlq", "list", "--config", wrong)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("%d entries shown", n)) || !strings.Contains(out, "missing_field") {
		t.Fatalf("dlq list: %d %q %q", code, out, errOut)
	}
	if strings.Contains(out, "4111 1111 1111 1111") {
		t.Fatalf("dlq list shows a full card number:\n%s", out)
	}

	export := filepath.Join(t.TempDir(), "dlq.jsonl")
	if code, _, errOut := runCLI("dlq", "export", "--config", wrong, "--out", export, "--code", "missing_field"); code != 0 {
		t.Fatalf("dlq export: %d %s", code, errOut)
	}
	f, err := os.Open(export)
	if err != nil {
		t.Fatal(err)
	}
	lines := 0
	for sc := bufio.NewScanner(f); sc.Scan(); lines++ {
		var e struct {
			Topic, Code, Field, Raw string
			Offset                  int64
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("export line %d is not JSON: %v", lines+1, err)
		}
		if e.Topic != "shop" || e.Code != "missing_field" || e.Field != "amount" || e.Raw == "" {
			t.Fatalf("export line %d: %+v", lines+1, e)
		}
	}
	f.Close()
	if lines != n {
		t.Fatalf("exported %d lines, want %d", lines, n)
	}

	fixed := testConfig(t, dataDir, brokers, "shop", mapping("total_price"))
	code, out, errOut = runCLI("dlq", "replay", "--config", fixed)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("replayed %d entries: %d accepted", n, n)) {
		t.Fatalf("dlq replay: %d %q %q", code, out, errOut)
	}
	code, out, _ = runCLI("dlq", "list", "--config", fixed)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("%d entries shown", n)) {
		t.Fatalf("dead letters must be kept after a replay: %q", out)
	}
	held := heldRecords(t, dataDir)
	inOutbox := 0
	for _, offs := range held {
		for _, hs := range offs {
			for _, h := range hs {
				if h.where == "outbox" {
					inOutbox++
				}
			}
		}
	}
	if inOutbox != n {
		t.Fatalf("outbox holds %d replayed events, want %d", inOutbox, n)
	}
	code, out, _ = runCLI("dlq", "replay", "--config", fixed)
	if code != 0 || !strings.Contains(out, "replayed 0 entries") {
		t.Fatalf("a second replay must find nothing pending: %q", out)
	}
}
