package engine

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestExportAndShip seals a batch, exports it as Parquet, checks the files
// and the control totals, and walks it through parked, sealed and shipped;
// DeleteShipped then empties it after the grace period only.
func TestExportAndShip(t *testing.T) {
	now := testNow
	h := newHarness(t, func(o *Options) { o.Now = func() time.Time { return now } })
	h.add("orders", 0,
		ev("a", "s1", "10.25", at(0)),
		ev("b", "s1", "0.75", at(time.Second)),
		ev("c", "s2", "100", at(2*time.Second), "currency", "USD"),
		ev("d", "s2", "5", at(10*time.Minute)), // closes the first minute's windows
	)
	h.drain()
	bs := []BatchInfo{h.sealOne()}
	id := bs[0].ID
	ctx := context.Background()
	dir := t.TempDir()
	x, err := h.e.ExportBatch(ctx, id, dir)
	if err != nil {
		t.Fatal(err)
	}
	// One micro-batch, one part: shipped as it is, a copy.
	if x.Rows != 4 || x.WindowRows != 2 || x.FileBytes <= 0 || len(x.RowsFiles) != 1 ||
		x.RowsFiles[0] != filepath.Join(dir, id+".rows.0000000000000001.parquet") {
		t.Fatalf("export %+v", x)
	}
	if a, b := fileBytes(t, x.RowsFiles[0]), fileBytes(t, filepath.Join(h.dir, PartsDir, "0000000000000001.parquet")); a != b {
		t.Fatal("the rows file is not the part as it is")
	}
	if got := fmt.Sprint(x.Totals); got != "[{EUR 3 16.0000} {USD 1 100.0000}]" {
		t.Fatalf("totals %s", got)
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ids string
	if err := db.QueryRow(`SELECT string_agg(event_id, ',' ORDER BY event_id) FROM read_parquet(?)`, x.RowsFiles[0]).Scan(&ids); err != nil {
		t.Fatal(err)
	}
	if ids != "a,b,c,d" {
		t.Fatalf("rows file: ids %s", ids)
	}
	var windows int
	var sum string
	if err := db.QueryRow(`SELECT count(*), CAST(sum(sum_amount) AS VARCHAR) FROM read_parquet(?)`, x.WindowsFile).Scan(&windows, &sum); err != nil {
		t.Fatal(err)
	}
	if windows != 2 || sum != "111.0000" {
		t.Fatalf("windows file: %d windows, sum %s", windows, sum)
	}

	if _, err := h.e.ExportBatch(ctx, "test-1-nope", dir); !errors.Is(err, ErrNoBatch) {
		t.Fatalf("export of an unknown batch: %v", err)
	}
	if err := h.e.RetryParked(id); err == nil || !strings.Contains(err.Error(), "not parked") {
		t.Fatalf("retry of a sealed batch: %v", err)
	}
	if err := h.e.Park(id, "SQL compilation error: invalid identifier"); err != nil {
		t.Fatal(err)
	}
	h.reopen() // states are persistent
	bs, _ = h.e.SealedBatches()
	if len(bs) != 1 || bs[0].State != BatchParked || bs[0].Error != "SQL compilation error: invalid identifier" {
		t.Fatalf("parked: %+v", bs)
	}
	if err := h.e.RetryParked(id); err != nil {
		t.Fatal(err)
	}
	if bs, _ = h.e.SealedBatches(); bs[0].State != BatchSealed || bs[0].Error != "" {
		t.Fatalf("retried: %+v", bs)
	}
	if err := h.e.MarkShipped(id); err != nil {
		t.Fatal(err)
	}
	if err := h.e.MarkShipped(id); err != nil { // idempotent
		t.Fatal(err)
	}
	if err := h.e.Park(id, "late"); err == nil {
		t.Fatal("a shipped batch was parked")
	}
	if bs, _ = h.e.SealedBatches(); len(bs) != 0 {
		t.Fatalf("shipped batch still listed: %+v", bs)
	}
	if st := h.e.Stats(); st.SealedBatchesPending != 0 || st.OutboxRowsPending != 0 || st.OutboxWindowRowsPending != 0 {
		t.Fatalf("stats after shipping: %+v", st)
	}
	if got := h.e.OutboxBytesPending(); got != 0 {
		t.Fatalf("OutboxBytesPending() = %d after shipping everything", got)
	}
	h.reopen()
	if st := h.e.Stats(); st.SealedBatchesPending != 0 || st.OutboxRowsPending != 0 {
		t.Fatalf("stats after shipping and reopening: %+v", st)
	}

	if n, err := h.e.DeleteShipped(now); err != nil || n != 0 {
		t.Fatalf("delete within the grace period: %d %v", n, err)
	}
	if n, err := h.e.DeleteShipped(now.Add(time.Second)); err != nil || n != 1 {
		t.Fatalf("delete after the grace period: %d %v", n, err)
	}
	if c := h.count(`SELECT count(*) FROM outbox_rows`) + h.count(`SELECT count(*) FROM outbox_windows`); c != 0 {
		t.Fatalf("%d rows left of a deleted batch", c)
	}
	if c := h.count(`SELECT count(*) FROM outbox_batches WHERE state = 'shipped'`); c != 1 {
		t.Fatal("the shipped batch's record must stay")
	}
	if n, err := h.e.DeleteShipped(now.Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("second delete: %d %v", n, err)
	}
}

// TestExportChecksums: Export carries the SHA-256 of each file it wrote,
// as sha256sum would compute it from the file, and no other entry.
func TestExportChecksums(t *testing.T) {
	h := newHarness(t, nil)
	h.add("orders", 0, ev("a", "s1", "10.25", at(0)), ev("b", "s2", "5", at(10*time.Minute)))
	h.drain()
	x, err := h.e.ExportBatch(context.Background(), h.sealOne().ID, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(x.Checksums) != 2 {
		t.Fatalf("checksums %v, want one for each of the two files", x.Checksums)
	}
	for _, f := range x.Files() {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if want := hex.EncodeToString(sum[:]); x.Checksums[f] != want {
			t.Fatalf("%s: checksum %q, the file's SHA-256 is %s", f, x.Checksums[f], want)
		}
		if got, err := FileChecksum(f); err != nil || got != x.Checksums[f] {
			t.Fatalf("FileChecksum(%s) = %q, %v; want %s", f, got, err, x.Checksums[f])
		}
	}
	if _, err := FileChecksum(filepath.Join(t.TempDir(), "missing.parquet")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("FileChecksum of a missing file: %v", err)
	}
}

func fileBytes(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestExportCompactsSmallParts exports a batch of many small parts as one
// compacted file with every row (TestExportAndShip: a large part ships as
// it is).
func TestExportCompactsSmallParts(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.BatchRecords = 3 })
	for i := range 10 {
		h.add("orders", 0, ev(fmt.Sprint("e", i), "s1", "1.5", at(time.Duration(i)*time.Second)))
	}
	h.drain()
	b := h.sealOne()
	if n := h.count(`SELECT count(*) FROM outbox_parts`); n != 4 {
		t.Fatalf("%d parts, want 4 micro-batches' worth", n)
	}
	x, err := h.e.ExportBatch(context.Background(), b.ID, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(x.RowsFiles) != 1 || !strings.HasSuffix(x.RowsFiles[0], b.ID+".rows.parquet") {
		t.Fatalf("rows files %v, want one compacted file", x.RowsFiles)
	}
	got := h.rows(`SELECT count(*), count(DISTINCT event_id), CAST(sum(amount) AS VARCHAR) FROM read_parquet(?)`, x.RowsFiles[0])
	if !slices.Equal(got, []string{"10 10 15.0000"}) || fmt.Sprint(x.Totals) != "[{EUR 10 15.0000}]" {
		t.Fatalf("compacted file %v, totals %v", got, x.Totals)
	}
	if sum, err := FileChecksum(x.RowsFiles[0]); err != nil || sum != x.Checksums[x.RowsFiles[0]] {
		t.Fatalf("checksum %s %v, export says %s", sum, err, x.Checksums[x.RowsFiles[0]])
	}
}

// TestExportRefusesDamagedParts damages a part on disk: the export fails
// with a *PartsDamagedError naming the part and the WAL ranges to read
// again, and ships nothing; a missing part is reported the same way.
func TestExportRefusesDamagedParts(t *testing.T) {
	h := newHarness(t, nil)
	h.add("orders", 0, ev("a", "s1", "1", at(0)), ev("b", "s1", "2", at(time.Second)))
	h.drain()
	b := h.sealOne()
	part := filepath.Join(h.dir, PartsDir, "0000000000000001.parquet")
	data, err := os.ReadFile(part)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x10
	if err := os.WriteFile(part, data, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, err = h.e.ExportBatch(context.Background(), b.ID, dir)
	var pd *PartsDamagedError
	if !errors.As(err, &pd) || len(pd.Parts) != 1 || pd.Parts[0].Path != part || pd.Parts[0].Got == pd.Parts[0].Want ||
		!strings.Contains(err.Error(), "orders/0 offsets 0-1") {
		t.Fatalf("export of a damaged part: %v", err)
	}
	if files, _ := os.ReadDir(dir); len(files) != 0 {
		t.Fatalf("files exported from a damaged part: %v", files)
	}
	if err := os.Remove(part); err != nil {
		t.Fatal(err)
	}
	if _, err = h.e.ExportBatch(context.Background(), b.ID, dir); !errors.As(err, &pd) || !errors.Is(pd.Parts[0].Err, fs.ErrNotExist) {
		t.Fatalf("export of a missing part: %v", err)
	}
}
