package engine

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// v1OutboxRows is outbox_rows as schema version 1 created it.
const v1OutboxRows = `CREATE TABLE outbox_rows (
	event_id VARCHAR NOT NULL, order_id VARCHAR, event_type VARCHAR NOT NULL, store_id VARCHAR, customer_id VARCHAR,
	customer_email_hash VARCHAR, amount DECIMAL(38,4), currency VARCHAR, payment_method VARCHAR, card_last4 VARCHAR,
	channel VARCHAR, country VARCHAR, items VARCHAR, event_time TIMESTAMPTZ NOT NULL, base_amount DECIMAL(38,4),
	region VARCHAR, timezone VARCHAR, source_topic VARCHAR NOT NULL, source_partition INTEGER NOT NULL,
	source_offset BIGINT NOT NULL, kafka_time TIMESTAMPTZ NOT NULL, ingest_time TIMESTAMPTZ NOT NULL, batch_id VARCHAR)`

// TestMigrateFromSchemaV1 turns a database into what schema version 1
// kept (clean rows in outbox_rows, no parts) and opens it: the rows of the
// sealed and the open batch come back as parts with the same values and
// control totals, a shipped batch's rows are let go, and micro-batches and
// exports go on from there.
func TestMigrateFromSchemaV1(t *testing.T) {
	now := testNow
	h := newHarness(t, func(o *Options) { o.Now = func() time.Time { return now } })
	h.add("orders", 0, ev("a", "s1", "10.25", at(0)), ev("b", "s2", "5", at(time.Second), "currency", "USD"))
	h.drain()
	if err := h.e.SealNow(); err != nil {
		t.Fatal(err)
	}
	h.add("orders", 0, ev("c", "s1", "7", at(2*time.Second)))
	h.drain()
	if err := h.e.SealNow(); err != nil {
		t.Fatal(err)
	}
	h.add("orders", 0, ev("d", "s1", "1.5", at(3*time.Second)), ev("e", "s3", "2", at(4*time.Second)))
	h.drain() // d and e stay in the open batch
	bs, _ := h.e.SealedBatches()
	if len(bs) != 2 {
		t.Fatalf("batches %+v", bs)
	}
	if bs[0].Rows == 1 { // both sealed at testNow: ordered by id
		bs[0], bs[1] = bs[1], bs[0]
	}
	if err := h.e.MarkShipped(bs[1].ID); err != nil { // c: its rows go
		t.Fatal(err)
	}
	const rowsQ = `SELECT * FROM outbox_rows WHERE event_id <> 'c' ORDER BY event_id`
	want := h.rows(rowsQ)
	wantX, err := h.e.ExportBatch(context.Background(), bs[0].ID, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	with, err := RowsSQL(context.Background(), h.e.db, h.dir)
	if err != nil {
		t.Fatal(err)
	}
	h.close()

	db := downgradeToV2(t, h.dir)
	for _, q := range []string{
		v1OutboxRows,
		with + `INSERT INTO outbox_rows SELECT * EXCLUDE (attributes, extras) FROM outbox_rows`, // version 1 had neither
		`DROP TABLE outbox_parts`,
		`ALTER TABLE engine_state DROP COLUMN next_part_seq`,
		`UPDATE schema_version SET version = 1`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(h.dir, PartsDir)); err != nil {
		t.Fatal(err)
	}

	h.open()
	if got := h.rows(rowsQ); !reflect.DeepEqual(got, want) {
		t.Fatalf("after the upgrade:\n%v\nwant\n%v", got, want)
	}
	if got := h.rows(`SELECT seq, rows, batch_id IS NULL FROM outbox_parts ORDER BY seq`); !reflect.DeepEqual(got, []string{"1 2 false", "2 2 true"}) {
		t.Fatalf("parts %v", got)
	}
	x, err := h.e.ExportBatch(context.Background(), bs[0].ID, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(x.Totals, wantX.Totals) || x.Rows != 2 || !x.OldestIngest.Equal(wantX.OldestIngest) {
		t.Fatalf("export after the upgrade %+v, want totals %v", x, wantX.Totals)
	}
	h.add("orders", 0, ev("f", "s1", "3", at(5*time.Second)))
	h.drain()
	if got := h.rows(`SELECT seq, rows FROM outbox_parts WHERE seq = 3`); !reflect.DeepEqual(got, []string{"3 1"}) {
		t.Fatalf("the next micro-batch's part: %v", got)
	}
	if v := h.count(`SELECT version FROM schema_version`); v != schemaVersion {
		t.Fatalf("schema version %d", v)
	}
	if st := h.e.Stats(); st.Deduplicated != 0 || st.DedupeKeys != 6 {
		t.Fatalf("dedupe after the upgrade: %d deduplicated, %d keys, want 0 and 6", st.Deduplicated, st.DedupeKeys)
	}
}

// downgradeToV2 turns the closed engine's database in dir into what schema
// version 2 kept (the dedupe keys in a dedupe table, no key store) and
// returns it open.
func downgradeToV2(t *testing.T, dir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("duckdb", filepath.Join(dir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	keys := storedKeys(t, db, dir)
	for _, q := range []string{
		`CREATE TABLE dedupe (hash_hi UBIGINT NOT NULL, hash_lo UBIGINT NOT NULL, event_time TIMESTAMP NOT NULL)`,
		`ALTER TABLE engine_state DROP COLUMN window_holds`, // version 3 had no window holds
		`ALTER TABLE engine_state DROP COLUMN open_holds`,
		`ALTER TABLE outbox_batches DROP COLUMN holds`,
		`UPDATE schema_version SET version = 2`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, k := range keys {
		var hexKey string
		var us int64
		if _, err := fmt.Sscan(k, &hexKey, &us); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`INSERT INTO dedupe VALUES (('0x' || ?)::UBIGINT, ('0x' || ?)::UBIGINT, make_timestamp(?::BIGINT))`,
			hexKey[:16], hexKey[16:], us); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(filepath.Join(dir, KeysDir)); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestMigrateFromSchemaV2 turns a database into what schema version 2
// kept (the keys in DuckDB's dedupe table) and opens it: the keys move to
// the key store, the table goes, and the ids are still caught after the
// upgrade and after a restart.
func TestMigrateFromSchemaV2(t *testing.T) {
	h := newHarness(t, nil)
	h.add("orders", 0, ev("a", "s1", "1", at(0)), ev("b", "s2", "5", at(time.Minute)))
	h.drain()
	h.close()
	if err := downgradeToV2(t, h.dir).Close(); err != nil {
		t.Fatal(err)
	}
	h.open()
	if v := h.count(`SELECT version FROM schema_version`); v != schemaVersion {
		t.Fatalf("schema version %d", v)
	}
	if n := h.count(`SELECT count(*) FROM information_schema.tables WHERE table_name = 'dedupe'`); n != 0 {
		t.Fatal("the dedupe table is still there")
	}
	if got := len(h.keys()); got != 2 || h.e.keys.seq != 1 {
		t.Fatalf("key store: %d keys, seq %d, want 2 and 1", got, h.e.keys.seq)
	}
	h.add("orders", 0, ev("a", "s1", "1", at(0)), ev("c", "s1", "2", at(0)))
	h.drain()
	h.reopen()
	h.add("orders", 0, ev("b", "s2", "5", at(time.Minute)))
	h.drain()
	if st := h.e.Stats(); st.Deduplicated != 2 || st.Accepted != 3 || st.DedupeKeys != 3 {
		t.Fatalf("after the upgrade: %d deduplicated, %d accepted, %d keys, want 2 3 3", st.Deduplicated, st.Accepted, st.DedupeKeys)
	}
	h.checkDedupeKeysHaveRows()
}
