package check

import (
	"database/sql"
	"fmt"
)

// Latencies are percentiles, in milliseconds, of the time from an event's
// Kafka timestamp to its WAL fsync (the row's INGEST_TIME) and to the
// commit of the load that carried it (the ledger's LOADED_AT).
// The JSON names are those of `offload bench --json`.
type Latencies struct {
	P50DurableMs    float64 `json:"p50_durable_ms"`
	P99DurableMs    float64 `json:"p99_durable_ms"`
	P999DurableMs   float64 `json:"p999_durable_ms"`
	P50WarehouseMs  float64 `json:"p50_warehouse_ms"`
	P99WarehouseMs  float64 `json:"p99_warehouse_ms"`
	P999WarehouseMs float64 `json:"p999_warehouse_ms"`
}

// RunLatencies measures Latencies over the rows whose event id matches
// like (e.g. "evt-RUNID-%": one generator run). tables qualifies the
// table names, e.g. "PUBLIC." or "ANALYTICS.OFFLOAD.". The SQL is
// Snowflake's and DuckDB's alike.
func RunLatencies(db *sql.DB, tables, like string) (Latencies, error) {
	var l Latencies
	q := func(expr string) (p50, p99, p999 float64, err error) {
		err = db.QueryRow(`SELECT PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY `+expr+`), PERCENTILE_CONT(0.99) WITHIN GROUP (ORDER BY `+expr+`),
			PERCENTILE_CONT(0.999) WITHIN GROUP (ORDER BY `+expr+`)
			FROM `+tables+`OFFLOAD_TRANSACTIONS t JOIN `+tables+`OFFLOAD_LOAD_LEDGER l ON t.BATCH_ID = l.BATCH_ID WHERE t.EVENT_ID LIKE ?`, like).Scan(&p50, &p99, &p999)
		if err != nil {
			err = fmt.Errorf("cannot measure latencies in the warehouse: %w", err)
		}
		return
	}
	var err error
	if l.P50DurableMs, l.P99DurableMs, l.P999DurableMs, err = q(`DATEDIFF('millisecond', t.KAFKA_TIME, t.INGEST_TIME)`); err != nil {
		return l, err
	}
	l.P50WarehouseMs, l.P99WarehouseMs, l.P999WarehouseMs, err = q(`DATEDIFF('millisecond', t.KAFKA_TIME, l.LOADED_AT)`)
	return l, err
}
