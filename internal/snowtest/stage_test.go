package snowtest_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/snowflakedb/gosnowflake"

	"github.com/offload/offload/internal/snowtest"
)

// writeParquet writes a zstd Parquet file with DuckDB's COPY ... TO, as the
// loader exports batches.
func writeParquet(t *testing.T, srv *snowtest.Server, rows int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "batch-0001.parquet")
	_, err := srv.DB().ExecContext(ctxT(t), `COPY (SELECT i AS event_id, i * 1.5 AS Amount, 'EUR' AS currency, 'extra' AS not_in_table
		FROM range(`+strconv.Itoa(rows)+`) r(i)) TO '`+path+`' (FORMAT parquet, COMPRESSION zstd)`)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPutAndCopyParquet(t *testing.T) {
	srv := newServer(t, snowtest.Options{})
	db := open(t, srv.Config("loader"))
	path := writeParquet(t, srv, 25)
	exec(t, db, "CREATE TABLE staging_0001 (EVENT_ID BIGINT, AMOUNT NUMBER(12,2), CURRENCY VARCHAR, BATCH_ID VARCHAR)")
	exec(t, db, "CREATE TEMPORARY STAGE IF NOT EXISTS offload_stage")
	exec(t, db, "PUT 'file://"+path+"' @offload_stage/batches AUTO_COMPRESS=FALSE OVERWRITE=TRUE")

	var name, md5, modified string
	var size int64
	if err := db.QueryRowContext(ctxT(t), "LIST @offload_stage").Scan(&name, &size, &md5, &modified); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if name != "offload_stage/batches/batch-0001.parquet" || size != info.Size() {
		t.Fatalf("LIST = %s (%d bytes), want the %d-byte file", name, size, info.Size())
	}

	copySQL := `COPY INTO staging_0001 FROM @offload_stage/batches/batch-0001.parquet
		FILE_FORMAT = (TYPE = PARQUET) MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE`
	rows, err := db.QueryContext(ctxT(t), copySQL)
	if err != nil {
		t.Fatal(err)
	}
	var file, status string
	var parsed, loaded int
	for rows.Next() {
		var skip [6]any
		if err := rows.Scan(&file, &status, &parsed, &loaded, &skip[0], &skip[1], &skip[2], &skip[3], &skip[4], &skip[5]); err != nil {
			t.Fatal(err)
		}
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	if status != "LOADED" || parsed != 25 || loaded != 25 {
		t.Fatalf("COPY result %s %s parsed %d loaded %d, want 25 LOADED", file, status, parsed, loaded)
	}
	if n := count(t, db, "SELECT count(*) FROM staging_0001 WHERE amount = event_id * 1.5 AND batch_id IS NULL"); n != 25 {
		t.Fatalf("%d rows arrived intact, want 25", n)
	}
	// Snowflake's load metadata: the same file is not loaded twice.
	var again string
	if err := db.QueryRowContext(ctxT(t), copySQL).Scan(&again); err != nil {
		t.Fatal(err)
	}
	if again != "Copy executed with 0 files processed." {
		t.Fatalf("second COPY: %q", again)
	}
	exec(t, db, "COPY INTO staging_0001 FROM @offload_stage/batches FILE_FORMAT=(TYPE=PARQUET) MATCH_BY_COLUMN_NAME=CASE_INSENSITIVE FORCE=TRUE PURGE=TRUE")
	if n := count(t, db, "SELECT count(*) FROM staging_0001"); n != 50 {
		t.Fatalf("%d rows after FORCE, want 50", n)
	}
	r, err := db.QueryContext(ctxT(t), "LIST @offload_stage")
	if err != nil {
		t.Fatal(err)
	}
	if r.Next() {
		t.Fatal("PURGE = TRUE left the file in the stage")
	}
	_ = r.Close()
}

// TestDriverStreamedPutToLocalStageWritesEmptyFile pins a gosnowflake
// v1.19.1 bug: a PUT whose data comes from a stream (WithFileStream) to a
// LOCAL_FS stage writes a 0-byte file, because local_storage_client.go
// sizes its buffer from the stream that updateUploadSize already consumed.
// Uploads from a file path work (TestPutAndCopyParquet). When a driver
// upgrade fixes this, this test fails: the loader may then stream.
func TestDriverStreamedPutToLocalStageWritesEmptyFile(t *testing.T) {
	srv := newServer(t, snowtest.Options{})
	db := open(t, srv.Config("loader"))
	exec(t, db, "CREATE STAGE s")
	data := bytes.Repeat([]byte("0123456789"), 100)
	ctx := gosnowflake.WithFileStream(ctxT(t), bytes.NewReader(data))
	if _, err := db.ExecContext(ctx, "PUT 'file:///nonexistent/streamed.csv' @s AUTO_COMPRESS=FALSE"); err != nil {
		t.Fatal(err)
	}
	var name, md5, modified string
	var size int64
	if err := db.QueryRowContext(ctxT(t), "LIST @s").Scan(&name, &size, &md5, &modified); err != nil {
		t.Fatal(err)
	}
	if size != 0 {
		t.Fatalf("the streamed PUT stored %d of %d bytes: the driver bug is fixed, the loader can stream uploads now", size, len(data))
	}
}
