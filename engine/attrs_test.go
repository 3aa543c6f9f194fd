package engine

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/offload/offload/engine/event"
)

// TestUnmappedFieldsInParts checks that a record's unmapped keys reach its
// part as the attributes column, its extra columns as extras, and that
// they are counted by name across a restart.
func TestUnmappedFieldsInParts(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		cfg := o.Topics["orders"]
		cfg.ExtraColumns = map[string]event.ExtraColumn{"coupon_code": {Source: "coupon", Type: event.ExtraString}}
		o.Topics["orders"] = cfg
	})
	h.add("orders", 0,
		ev("a", "s1", "1.00", at(0), "coupon", "SPRING", "gift_wrap", true, "note", "hi"),
		ev("b", "s1", "2.00", at(0), "gift_wrap", false),
		ev("c", "s1", "3.00", at(0)),
	)
	h.drain()
	got := h.rows(`SELECT event_id, attributes, extras FROM outbox_rows ORDER BY event_id`)
	want := []string{
		`a "{\"gift_wrap\":true,\"note\":\"hi\"}" "{\"coupon_code\":\"SPRING\"}"`,
		`b "{\"gift_wrap\":false}" NULL`,
		`c NULL NULL`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("rows:\n%q\nwant\n%q", got, want)
	}
	check := func() {
		t.Helper()
		u := h.e.Stats().UnmappedByField
		if len(u) != 2 || u["gift_wrap"] != 2 || u["note"] != 1 {
			t.Fatalf("unmapped counts %v; want gift_wrap 2, note 1 (coupon is promoted)", u)
		}
	}
	check()
	h.reopen()
	check()
}

// TestUnmappedNamesBounded checks that past MaxUnmappedNames names, new
// unmapped fields are counted under UnmappedOther, also across batches
// and restarts.
func TestUnmappedNamesBounded(t *testing.T) {
	h := newHarness(t, nil)
	var recs []string
	for i := range MaxUnmappedNames - 10 {
		recs = append(recs, ev(fmt.Sprint("a", i), "s1", "1", at(0), fmt.Sprintf("f%03d", i), i))
	}
	h.add("orders", 0, recs...)
	h.drain()
	h.reopen()
	recs = recs[:0]
	for i := MaxUnmappedNames - 10; i < MaxUnmappedNames+5; i++ {
		recs = append(recs, ev(fmt.Sprint("a", i), "s1", "1", at(0), fmt.Sprintf("f%03d", i), i, "f000", 0))
	}
	h.add("orders", 0, recs...)
	h.drain()
	u := h.e.Stats().UnmappedByField
	if len(u) != MaxUnmappedNames+1 || u[UnmappedOther] != 5 || u["f000"] != 16 || u[fmt.Sprintf("f%03d", MaxUnmappedNames-1)] != 1 {
		t.Fatalf("%d names, %s %d, f000 %d; want %d names, 5, 16", len(u), UnmappedOther, u[UnmappedOther], u["f000"], MaxUnmappedNames+1)
	}
	if _, ok := u[fmt.Sprintf("f%03d", MaxUnmappedNames)]; ok {
		t.Fatalf("name past the bound counted on its own")
	}
}

// TestExportMixesOldParts checks that a batch holding a part written
// before parts had the attributes and extras columns exports with them,
// NULL for the old part's rows.
func TestExportMixesOldParts(t *testing.T) {
	h := newHarness(t, nil)
	h.add("orders", 0, ev("a", "s1", "1", at(0), "note", "old"))
	h.drain()
	rewriteAsOldPart(t, h, 1)
	h.add("orders", 0, ev("b", "s1", "2", at(time.Second), "note", "new"))
	h.drain()
	bi := h.sealOne()
	x, err := h.e.ExportBatch(context.Background(), bi.ID, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(x.RowsFiles) != 1 {
		t.Fatalf("rows files %v; want the parts compacted into one", x.RowsFiles)
	}
	got := h.rows(`SELECT event_id, attributes FROM read_parquet(` + sqlQuote(x.RowsFiles[0]) + `) ORDER BY event_id`)
	if want := []string{`a NULL`, `b "{\"note\":\"new\"}"`}; !slices.Equal(got, want) {
		t.Fatalf("compacted rows %q; want %q", got, want)
	}
	if err := h.e.MarkShipped(bi.ID); err != nil {
		t.Fatal(err)
	}

	// A batch of one old part is rewritten too, so that every rows file
	// has every column (Redshift's COPY maps them by position).
	h.add("orders", 0, ev("c", "s1", "3", at(2*time.Second)))
	h.drain()
	rewriteAsOldPart(t, h, 3)
	bi = h.sealOne()
	if x, err = h.e.ExportBatch(context.Background(), bi.ID, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	got = h.rows(`SELECT event_id, attributes, extras FROM read_parquet(` + sqlQuote(x.RowsFiles[0]) + `)`)
	if want := []string{`c NULL NULL`}; len(x.RowsFiles) != 1 || !slices.Equal(got, want) {
		t.Fatalf("files %v, rows %q; want one file with %q", x.RowsFiles, got, want)
	}
}

// rewriteAsOldPart rewrites part seq as an offload older than the
// attributes and extras columns wrote it, and records its checksum.
func rewriteAsOldPart(t *testing.T, h *harness, seq int64) {
	t.Helper()
	old := partPath(h.e.partsDir(), seq)
	tmp := old + ".old"
	if _, err := h.e.db.Exec(`COPY (SELECT * EXCLUDE (attributes, extras) FROM read_parquet(` + sqlQuote(old) + `)) TO ` + sqlQuote(tmp) + ` (FORMAT parquet)`); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, old); err != nil {
		t.Fatal(err)
	}
	sum, err := FileChecksum(old)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.e.db.Exec(`UPDATE outbox_parts SET sha256 = $1, bytes = $2 WHERE seq = $3`, sum, fileSize(t, old), seq); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}
