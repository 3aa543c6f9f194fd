package engine

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/offload/offload/engine/event"
	"github.com/offload/offload/engine/window"
	"github.com/offload/offload/wal"
)

// createSchema upgrades a database of an earlier schema version
// (migrate.go), creates the tables if missing and checks the schema
// version, then the write connection's staging tables.
func (e *Engine) createSchema(ctx context.Context) error {
	if err := e.migrate(ctx); err != nil {
		return err
	}
	err := e.inTx(ctx, func() error {
		for _, ddl := range schemaDDL {
			if _, err := e.conn.ExecContext(ctx, ddl); err != nil {
				return err
			}
		}
		var v int
		switch err := e.conn.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); {
		case errors.Is(err, sql.ErrNoRows):
			_, err = e.conn.ExecContext(ctx, `INSERT INTO schema_version VALUES (?)`, schemaVersion)
			return err
		case err != nil:
			return err
		case v != schemaVersion:
			return fmt.Errorf("the database has schema version %d and this offload knows version %d: run the offload version that wrote it, or move %s aside", v, schemaVersion, e.path)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("engine: cannot create the schema in %s: %w", e.path, err)
	}
	for _, ddl := range tempDDL {
		if _, err := e.conn.ExecContext(ctx, ddl); err != nil {
			return fmt.Errorf("engine: cannot create staging tables: %w", err)
		}
	}
	return nil
}

// inTx runs fn inside BEGIN ... COMMIT on the write connection, rolling
// back if fn or the commit fails.
func (e *Engine) inTx(ctx context.Context, fn func() error) error {
	if _, err := e.conn.ExecContext(ctx, `BEGIN TRANSACTION`); err != nil {
		return err
	}
	if err := fn(); err != nil {
		if _, rerr := e.conn.ExecContext(ctx, `ROLLBACK`); rerr != nil {
			return errors.Join(err, fmt.Errorf("rollback: %w", rerr))
		}
		return err
	}
	if _, err := e.conn.ExecContext(ctx, `COMMIT`); err != nil {
		// DuckDB aborts a transaction whose commit failed; the rollback
		// only makes sure the connection is out of it.
		_, _ = e.conn.ExecContext(ctx, `ROLLBACK`)
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// appender returns a DuckDB Appender on the write connection. Appended
// rows belong to the connection's open transaction: a ROLLBACK discards
// them (engine_test.go checks this).
func (e *Engine) appender(catalog, table string) (*duckdb.Appender, error) {
	var a *duckdb.Appender
	err := e.conn.Raw(func(dc any) error {
		c, ok := dc.(driver.Conn)
		if !ok {
			return fmt.Errorf("BUG: DuckDB driver connection is %T", dc)
		}
		var err error
		a, err = duckdb.NewAppender(c, catalog, "", table)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cannot append to %s: %w", table, err)
	}
	return a, nil
}

// appendRows appends n rows to table, row(i, args) filling args for row i.
func (e *Engine) appendRows(catalog, table string, ncol, n int, row func(i int, args []driver.Value)) error {
	if n == 0 {
		return nil
	}
	a, err := e.appender(catalog, table)
	if err != nil {
		return err
	}
	args := make([]driver.Value, ncol)
	for i := 0; i < n; i++ {
		row(i, args)
		if err := a.AppendRow(args...); err != nil {
			_ = a.Close()
			return fmt.Errorf("cannot append to %s: %w", table, err)
		}
	}
	if err := a.Close(); err != nil {
		return fmt.Errorf("cannot append to %s: %w", table, err)
	}
	return nil
}

// load reads the engine's state from DuckDB into memory: the cursor,
// counters, windows, dedupe horizon and the open batch; then it stores the
// dedupe keys of committed micro-batches the key store lacks.
func (e *Engine) load(ctx context.Context) error {
	if err := e.loadState(ctx); err != nil {
		return fmt.Errorf("engine: cannot load the engine state from %s: %w", e.path, err)
	}
	if err := e.catchUpKeys(ctx); err != nil {
		return fmt.Errorf("engine: cannot bring the dedupe key store %s up to the database %s: %w", e.keys.dir, e.path, err)
	}
	return nil
}

// loadState reads the engine's state table by table and installs it once
// every table has been read.
func (e *Engine) loadState(ctx context.Context) error {
	st, err := e.loadEngineState(ctx)
	if err != nil {
		return err
	}
	cursor, err := e.loadCursor(ctx)
	if err != nil {
		return err
	}
	counters, err := e.loadCounters(ctx)
	if err != nil {
		return err
	}
	set, err := e.loadWindows(ctx, st)
	if err != nil {
		return err
	}
	sealed, err := e.loadSealed(ctx)
	if err != nil {
		return err
	}
	unshipped, err := e.loadUnshipped(ctx)
	if err != nil {
		return err
	}
	// Dedupe horizon: the key store holds its keys (keystore.go).
	e.keys.forgetBelow(st.horizon)
	e.cursor, e.counters, e.windows = cursor, counters, set
	e.ahead = nil // read from a cursor that may not be this one
	e.unmappedNames = 0
	for name := range counters {
		if strings.HasPrefix(name, cUnmappedPrefix) && name != cUnmappedPrefix+UnmappedOther {
			e.unmappedNames++
		}
	}
	e.dedupeMax = st.dedupeMax
	e.open, e.nextDLQID, e.sealed, e.nextPartSeq = st.open, st.nextDLQ, sealed, st.nextPart
	e.unshipped = unshipped
	e.windowHolds = st.windowHolds
	return nil
}

// storedState is the row of engine_state, or what a new database starts
// from.
type storedState struct {
	fresh        bool  // no row yet: a new database
	windowSizeMS int64 // the window size the open windows were built with
	maxEvent     time.Time
	dedupeMax    int64
	horizon      int64 // the dedupe horizon, math.MinInt64 when unset
	open         openBatch
	nextDLQ      int64
	nextPart     int64
	windowHolds  map[holdKey]int64
}

// loadEngineState reads engine_state: the watermark's and the dedupe's
// event times, the open batch and the next ids.
func (e *Engine) loadEngineState(ctx context.Context) (storedState, error) {
	var (
		maxNS, dedupeMaxNS, horizonN   sql.NullInt64
		ranges, windowHolds, openHolds string
		since                          sql.NullTime
	)
	st := storedState{horizon: math.MinInt64}
	err := e.conn.QueryRowContext(ctx, `SELECT window_size_ms, max_event_time_ns, dedupe_max_time_ns, dedupe_horizon_ns,
		open_ranges, open_since, open_rows, open_window_rows, open_bytes, next_dlq_id, next_part_seq,
		coalesce(window_holds, ''), coalesce(open_holds, '') FROM engine_state WHERE id = 1`).
		Scan(&st.windowSizeMS, &maxNS, &dedupeMaxNS, &horizonN, &ranges, &since, &st.open.rows, &st.open.windowRows, &st.open.bytes, &st.nextDLQ, &st.nextPart,
			&windowHolds, &openHolds)
	st.fresh = errors.Is(err, sql.ErrNoRows)
	if err != nil && !st.fresh {
		return st, err
	}
	if st.fresh {
		st.nextDLQ, st.nextPart = 1, 1
		ranges = "[]"
	}
	if maxNS.Valid {
		st.maxEvent = time.Unix(0, maxNS.Int64).UTC()
	}
	if dedupeMaxNS.Valid {
		st.dedupeMax = dedupeMaxNS.Int64
	}
	if horizonN.Valid {
		st.horizon = horizonN.Int64
	}
	if st.open.ranges, err = parseRanges(ranges); err != nil {
		return st, fmt.Errorf("engine_state.open_ranges: %w", err)
	}
	if since.Valid {
		st.open.since = since.Time
	}
	if st.windowHolds, err = parseWindowHolds(windowHolds); err != nil {
		return st, fmt.Errorf("engine_state.window_holds: %w", err)
	}
	if st.open.holds, err = parseHolds(openHolds); err != nil {
		return st, fmt.Errorf("engine_state.open_holds: %w", err)
	}
	return st, nil
}

// loadCursor reads engine_cursor: the next WAL offset of each partition.
func (e *Engine) loadCursor(ctx context.Context) (wal.Cursor, error) {
	cursor := wal.Cursor{}
	err := e.queryEach(ctx, `SELECT topic, "partition", next_offset FROM engine_cursor`, func(rows *sql.Rows) error {
		var tp wal.TopicPartition
		var key string
		var next int64
		if err := rows.Scan(&key, &tp.Partition, &next); err != nil {
			return err
		}
		// The topic column holds wal's TopicKey: the incarnation of a
		// recreated topic follows its name (docs/ARCHITECTURE.md).
		var err error
		if tp.Topic, tp.Incarnation, err = wal.ParseTopicKey(key); err != nil {
			return err
		}
		cursor[tp] = next
		return nil
	})
	return cursor, err
}

// loadCounters reads engine_counters.
func (e *Engine) loadCounters(ctx context.Context) (map[string]int64, error) {
	counters := map[string]int64{}
	err := e.queryEach(ctx, `SELECT name, value FROM engine_counters`, func(rows *sql.Rows) error {
		var name string
		var v int64
		if err := rows.Scan(&name, &v); err != nil {
			return err
		}
		counters[name] = v
		return nil
	})
	return counters, err
}

// loadWindows reads the open windows into a Set, refusing a window size
// other than the one they were built with.
func (e *Engine) loadWindows(ctx context.Context, st storedState) (*window.Set, error) {
	var nwin int64
	if err := e.conn.QueryRowContext(ctx, `SELECT count(*) FROM windows`).Scan(&nwin); err != nil {
		return nil, err
	}
	if !st.fresh && st.windowSizeMS != e.opts.Window.Size.Milliseconds() && nwin > 0 {
		return nil, fmt.Errorf("engine.window changed from %s to %s while %d windows are open; set it back, or let them be emitted first",
			time.Duration(st.windowSizeMS)*time.Millisecond, e.opts.Window.Size, nwin)
	}
	var ws []window.Window
	err := e.queryEach(ctx, `SELECT store_id, currency, event_type, channel, epoch_us(window_start), count,
		sum_e4, sum_base_e4, base_count, min_e4, max_e4, customers, version, dirty FROM windows`, func(rows *sql.Rows) error {
		var w window.Window
		var startUS int64
		var sum, sumBase, mn, mx int64
		var sketch []byte
		if err := rows.Scan(&w.StoreID, &w.Currency, &w.EventType, &w.Channel, &startUS, &w.Count,
			&sum, &sumBase, &w.BaseCount, &mn, &mx, &sketch, &w.Version, &w.Dirty); err != nil {
			return err
		}
		w.Start = time.UnixMicro(startUS).UTC()
		w.SumAmount, w.SumBase, w.Min, w.Max = event.Decimal(sum), event.Decimal(sumBase), event.Decimal(mn), event.Decimal(mx)
		if err := w.Customers.UnmarshalBinary(sketch); err != nil {
			return fmt.Errorf("window %s/%s/%s/%s at %s: %w", w.StoreID, w.Currency, w.EventType, w.Channel, w.Start, err)
		}
		ws = append(ws, w)
		return nil
	})
	if err != nil {
		return nil, err
	}
	set := window.NewSet(e.opts.Window)
	set.Restore(ws, st.maxEvent)
	return set, nil
}

// loadSealed totals the sealed batches of outbox_batches not shipped yet.
func (e *Engine) loadSealed(ctx context.Context) (pending, error) {
	var sealed pending
	err := e.conn.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(rows), 0), coalesce(sum(window_rows), 0), coalesce(sum(bytes), 0)
		FROM outbox_batches WHERE state <> 'shipped'`).Scan(&sealed.batches, &sealed.rows, &sealed.windowRows, &sealed.bytes)
	return sealed, err
}

// queryEach runs query on the write connection and calls scan for each
// row.
func (e *Engine) queryEach(ctx context.Context, query string, scan func(*sql.Rows) error) error {
	rows, err := e.conn.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	for rows.Next() {
		if err := scan(rows); err != nil {
			_ = rows.Close()
			return err
		}
	}
	return closeRows(rows)
}

func closeRows(rows *sql.Rows) error {
	err := rows.Err()
	return errors.Join(err, rows.Close())
}

// rangeJSON is one entry of outbox_batches.ranges and engine_state.open_ranges.
// Incarnation is left out for a topic's first incarnation, so the text
// and the batch ids hashed from it are those of before incarnations.
type rangeJSON struct {
	Topic       string `json:"topic"`
	Incarnation uint32 `json:"incarnation,omitempty"`
	Partition   int32  `json:"partition"`
	First       int64  `json:"first"`
	Last        int64  `json:"last"`
}

func parseRanges(s string) (map[wal.TopicPartition]offsetRange, error) {
	var rs []rangeJSON
	if err := json.Unmarshal([]byte(s), &rs); err != nil {
		return nil, err
	}
	out := make(map[wal.TopicPartition]offsetRange, len(rs))
	for _, r := range rs {
		out[wal.TopicPartition{Topic: r.Topic, Incarnation: r.Incarnation, Partition: r.Partition}] = offsetRange{r.First, r.Last}
	}
	return out, nil
}

// formatRanges renders ranges as JSON sorted by topic and partition: the
// canonical text batch ids are hashed from.
func formatRanges(m map[wal.TopicPartition]offsetRange) string {
	rs := make([]rangeJSON, 0, len(m))
	for _, tp := range sortedPartitions(m) {
		r := m[tp]
		rs = append(rs, rangeJSON{Topic: tp.Topic, Incarnation: tp.Incarnation, Partition: tp.Partition, First: r.first, Last: r.last})
	}
	b, err := json.Marshal(rs)
	if err != nil {
		panic("BUG: engine: cannot marshal ranges: " + err.Error())
	}
	return string(b)
}
