package engine

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/offload/offload/engine/event"
	"github.com/offload/offload/engine/window"
	"github.com/offload/offload/wal"
)

// ErrClosed is returned by operations on a closed Engine.
var ErrClosed = errors.New("engine: closed")

// DBFile is the DuckDB database's file name inside Options.Dir.
const DBFile = "engine.duckdb"

// Engine consumes the WAL in micro-batches into DuckDB: clean rows,
// windows, dead letters and the outbox. Its methods are safe for concurrent
// use; micro-batches, seals and DLQ replays run one at a time.
type Engine struct {
	opts Options
	log  *slog.Logger
	path string

	db   *sql.DB
	conn *sql.Conn // the one connection that writes; guarded by mu

	mu     sync.Mutex // serializes everything that writes, and the state below
	closed bool
	// broken is set when a failed transaction left the in-memory state
	// different from DuckDB's and reloading it failed too: every later
	// call returns it, and a restart rebuilds the state from DuckDB.
	broken error

	decoders []decoderSet // one per decoding goroutine (decode.go)
	// decodeGen counts the changes of the decoders' configuration and
	// tables: a read-ahead decoded before one is not used.
	decodeGen uint64
	decoded   []decoded // the last micro-batch's decodings, reused
	spare     scratch   // the last micro-batch's buffers, reused (recycle)
	// partEnc writes the micro-batches' parts, one at a time (part.go).
	partEnc partEncoder
	// ahead is the next micro-batch's records, read and decoded while
	// the last one committed (readahead.go); nil when there are none.
	ahead *readAhead

	// keys are the remembered dedupe keys (keystore.go), written after
	// each micro-batch's transaction has committed.
	keys *keyStore

	// duckMemory is DuckDB's memory as duckdb_memory() last reported it,
	// at duckRead (Engine.duckDBMemory).
	duckMemory int64
	duckRead   time.Time

	// State mirrored from DuckDB, rebuilt by load. Changed in memory only
	// after the transaction that persists it has committed, except the
	// window set, which a failed transaction reloads.
	cursor    wal.Cursor
	windows   *window.Set
	dedupeMax int64 // highest event time of a deduplicated-in event, Unix ns; 0 if none
	counters  map[string]int64
	// unmappedNames is how many unmapped field names counters counts
	// one by one (Engine.unmappedCounter).
	unmappedNames int
	open          openBatch
	nextDLQID     int64
	sealed        pending // sealed batches not yet shipped
	// unshipped are the ranges of the batches not shipped yet (sealed
	// or parked), by batch id (loaded.go).
	unshipped map[string]map[wal.TopicPartition]offsetRange
	// windowHolds are, with KeepUntilLoaded, the first offset of each
	// partition's records that fed the windows of each start the window
	// set still holds (holds.go).
	windowHolds map[holdKey]int64
	// nextPartSeq numbers the next micro-batch's part file.
	nextPartSeq int64

	// loaded is Loaded's snapshot, published with the stats.
	loaded atomic.Pointer[wal.Cursor]

	// partsBytes is what the committed parts hold on disk (DiskBytes).
	partsBytes atomic.Int64

	tablesMu      sync.Mutex
	pendingTables *tables // from SetTables, applied at the next micro-batch

	statsMu sync.Mutex
	stats   Stats // snapshot after the last commit

	alive atomic.Int64 // Unix nanoseconds of Run's last loop iteration
	// started is closed once Run's first micro-batch has ended (see
	// Started); startedOnce closes it.
	started     chan struct{}
	startedOnce sync.Once

	// hook, in tests, is called at named points inside the micro-batch
	// transaction; an error it returns fails the transaction there
	// (Options.TestHook).
	hook func(ctx context.Context, point string) error

	// work bounds every micro-batch besides the caller's context;
	// Interrupt cancels it (interrupt).
	work      context.Context
	interrupt context.CancelFunc
	// stale is set when a micro-batch was abandoned after it had changed
	// the in-memory state: the next one reloads the state from DuckDB
	// first. Guarded by mu.
	stale bool
}

type tables struct {
	rates *event.Rates
	ref   *event.Reference
}

// openBatch is the outbox batch being filled.
type openBatch struct {
	ranges     map[wal.TopicPartition]offsetRange
	since      time.Time // commit time of the micro-batch that opened it; zero when empty
	rows       int64
	windowRows int64
	bytes      int64
	// holds are, with KeepUntilLoaded, the first offset of each
	// partition's records that fed the windows emitted into the batch
	// (holds.go).
	holds map[wal.TopicPartition]int64
}

type offsetRange struct{ first, last int64 }

type pending struct {
	batches, rows, windowRows, bytes int64
}

// Open opens or creates the engine's DuckDB database in opts.Dir, creates
// the schema if missing, opens the dedupe key store, loads the cursor,
// windows and counters, and truncates the WAL below the committed cursor
// (records the engine has consumed are no longer needed: docs/ARCHITECTURE.md,
// "Engine: from the WAL to the outbox").
func Open(opts Options) (*Engine, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{opts: opts, log: opts.Logger, path: filepath.Join(opts.Dir, DBFile), started: make(chan struct{}), hook: opts.TestHook}
	e.work, e.interrupt = context.WithCancel(context.Background())
	var err error
	if e.decoders, err = newDecoderSets(opts.Topics, decodeWorkers); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("engine: cannot create the data directory %s: %w", opts.Dir, err)
	}
	// checkpoint_threshold: what DuckDB wrote since its last checkpoint
	// stays in memory besides its WAL (~2.5 times the WAL's size, the
	// windows rewritten by every micro-batch most of it), so the 256 MB
	// kept while the clean rows were DuckDB's let a steady rate grow the
	// process by ~25 MiB a minute for most of an hour; the rows are in
	// parts now, and DuckDB's default of 16 MB bounds it.
	// enable_external_file_cache: DuckDB would keep the parts it reads
	// (sealing, compaction) in its buffer pool up to memory_limit; the
	// kernel's page cache already holds them (docs/PERFORMANCE.md, "The
	// appliance's memory at a steady rate"). DuckDB's WAL counts in
	// DiskBytes, and a restart after a crash replays at most that much.
	dsn := fmt.Sprintf("%s?memory_limit=%dKiB&threads=%d&checkpoint_threshold=16MB&enable_external_file_cache=false",
		e.path, opts.MemoryLimit>>10, opts.Threads)
	connector, err := duckdb.NewConnector(dsn, nil)
	if err != nil {
		return nil, fmt.Errorf("engine: cannot open %s: %w", e.path, err)
	}
	// The key store first: upgrading a schema 2 database moves its
	// dedupe table into it.
	if e.keys, err = openKeyStore(filepath.Join(opts.Dir, KeysDir), int64(opts.DedupeWindow/time.Microsecond),
		opts.DedupeMemory, opts.Now, opts.Logger); err != nil {
		_ = connector.Close()
		return nil, err
	}
	e.db = sql.OpenDB(connector)
	ctx := context.Background()
	if e.conn, err = e.db.Conn(ctx); err != nil {
		_ = e.db.Close()
		_ = e.keys.close()
		return nil, fmt.Errorf("engine: cannot connect to %s: %w", e.path, err)
	}
	if err := e.createSchema(ctx); err != nil {
		e.closeDB()
		return nil, err
	}
	if err := e.load(ctx); err != nil {
		e.closeDB()
		return nil, err
	}
	held, err := e.sweepParts(ctx)
	if err != nil {
		e.closeDB()
		return nil, fmt.Errorf("engine: cannot sweep the outbox parts: %w", err)
	}
	e.partsBytes.Store(held)
	e.snapshotStats(0, 0)
	if _, err := opts.WAL.Truncate(e.truncateBelow()); err != nil {
		e.closeDB()
		return nil, fmt.Errorf("engine: cannot truncate the WAL below the committed cursor: %w", err)
	}
	e.log.Info("engine: opened", "path", e.path, "dedupe_keys", e.keys.held, "dedupe_slices", len(e.keys.slices),
		"dedupe_window_holds_up_to_events_per_s", int64(opts.DedupeRate()), "windows", e.windows.Len(),
		"open_rows", e.open.rows, "sealed_batches_pending", e.sealed.batches)
	return e, nil
}

func (e *Engine) closeDB() {
	// The connection first: closing the pool does not close a connection
	// that is checked out, and DuckDB's database stays open while any is.
	if e.conn != nil {
		_ = e.conn.Close()
	}
	_ = e.db.Close()
	_ = e.keys.close()
}

// Interrupt abandons the micro-batch in flight, if any, and makes every
// later one fail at once: it is for a shutdown whose grace period is over
// (docs/ARCHITECTURE.md, "Shutdown"). The abandoned micro-batch is rolled
// back, and the next start redoes it from the WAL. Close the engine next.
func (e *Engine) Interrupt() { e.interrupt() }

// Close closes the DuckDB database after the micro-batch in flight, if
// any; Interrupt first bounds the wait. It does not close the WAL.
func (e *Engine) Close() error {
	defer e.interrupt() // releases the work context
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	errConn := e.conn.Close()
	errDB := e.db.Close()
	errKeys := e.keys.close()
	if err := errors.Join(errConn, errDB); err != nil {
		return fmt.Errorf("engine: cannot close %s: %w", e.path, errors.Join(err, errKeys))
	}
	if errKeys != nil {
		return fmt.Errorf("engine: %w", errKeys)
	}
	return nil
}

// usable returns why the engine cannot run a transaction, if it cannot.
// Callers hold mu.
func (e *Engine) usable() error {
	if e.closed {
		return ErrClosed
	}
	return e.broken
}

// SetTables replaces the rates and reference tables (nil: none) of every
// topic, from the next micro-batch on.
func (e *Engine) SetTables(r *event.Rates, ref *event.Reference) {
	e.tablesMu.Lock()
	e.pendingTables = &tables{rates: r, ref: ref}
	e.tablesMu.Unlock()
}

// Reconfigure replaces topics' decoding configurations (filter rules
// changed by a reload, say; the mapping must decode what the WAL holds)
// and the seal policy, from the next micro-batch on. The new
// configurations are validated first; on an error nothing changes.
func (e *Engine) Reconfigure(topics map[string]event.Config, seal SealPolicy) error {
	sets, err := newDecoderSets(topics, len(e.decoders))
	if err != nil {
		return err
	}
	if seal.Rows < 1 || seal.Bytes < 1 || seal.Age < time.Second {
		return fmt.Errorf("engine: seal policy %+v: rows and bytes must be positive and age at least 1s", seal)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, set := range sets {
		for name, d := range set {
			e.decoders[i][name] = d
		}
	}
	for name, cfg := range topics {
		e.opts.Topics[name] = cfg
	}
	e.decodeGen++
	e.opts.Seal = seal
	return nil
}

// applyTables hands tables from SetTables to the decoders. Callers hold mu.
func (e *Engine) applyTables() {
	e.tablesMu.Lock()
	t := e.pendingTables
	e.pendingTables = nil
	e.tablesMu.Unlock()
	if t == nil {
		return
	}
	e.decodeGen++
	for _, set := range e.decoders {
		for _, d := range set {
			d.SetRates(t.rates)
			d.SetReference(t.ref)
		}
	}
}

// Run runs micro-batches until ctx is done: every Interval, and at once
// while BatchRecords or more records wait in the WAL. It returns nil when
// ctx is done, after the micro-batch in flight has committed (or has been
// abandoned by Interrupt), and the error of a micro-batch that failed (the
// state in DuckDB is intact: a restart resumes from the last commit).
// ctx stops the loop, not the micro-batch in flight: a shutdown lets that
// one finish within its grace period and then calls Interrupt.
func (e *Engine) Run(ctx context.Context) error {
	defer e.endStart()
	poll := e.opts.Interval / 10
	poll = max(poll, 5*time.Millisecond)
	poll = min(poll, 100*time.Millisecond)
	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	next := time.Now()
	// busy: the last micro-batch consumed records. Only then does a full
	// backlog start the next one at once: the backlog is counted in
	// offsets, and offsets that will never arrive (moved to the
	// quarantine by a repair) would otherwise keep the loop spinning.
	busy := false
	for {
		e.alive.Store(time.Now().UnixNano())
		if ctx.Err() != nil {
			return nil
		}
		if !time.Now().Before(next) || (busy && e.backlog() >= int64(e.opts.BatchRecords)) {
			next = time.Now().Add(e.opts.Interval)
			n, err := e.Step(context.WithoutCancel(ctx))
			if err != nil {
				if errors.Is(err, ErrClosed) || (errors.Is(err, context.Canceled) && e.work.Err() != nil) {
					return nil // closed or interrupted: the micro-batch is redone at the next start
				}
				return err
			}
			e.endStart()
			busy = n > 0
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// Alive returns when Run last went round its loop (zero before Run): the
// watchdog's proof that micro-batches are not stuck.
func (e *Engine) Alive() time.Time {
	if ns := e.alive.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Started returns a channel that is closed once Run's first micro-batch
// has committed, or Run has returned. That micro-batch redoes the one a
// crash rolled back and may be the longest of all: it belongs to the
// start-up, which the daemon reports to systemd only once it is over
// (docs/OPERATIONS.md, The watchdog).
func (e *Engine) Started() <-chan struct{} { return e.started }

// endStart closes the Started channel, once.
func (e *Engine) endStart() { e.startedOnce.Do(func() { close(e.started) }) }

// backlog returns the number of records in the WAL past the committed
// cursor.
func (e *Engine) backlog() int64 {
	var n int64
	for _, lag := range e.cursorLag() {
		n += lag
	}
	return n
}

// cursorLag returns, per partition the WAL holds, how many offsets lie
// between the committed cursor and the WAL's high water.
func (e *Engine) cursorLag() map[wal.TopicPartition]int64 {
	e.statsMu.Lock()
	cur := e.stats.Cursor
	e.statsMu.Unlock()
	out := map[wal.TopicPartition]int64{}
	for _, s := range e.opts.WAL.Stats() {
		next, ok := cur[s.TopicPartition]
		if !ok {
			if s.FirstOffset < 0 {
				continue
			}
			next = s.FirstOffset
		}
		if lag := s.HighWater + 1 - next; lag > 0 {
			out[s.TopicPartition] = lag
		} else {
			out[s.TopicPartition] = 0
		}
	}
	return out
}

// Step runs one micro-batch now: it reads up to BatchRecords records from
// the cursor and commits their outcome in one DuckDB transaction, then
// truncates the WAL below the new cursor. It returns the number of records
// consumed (0 when the WAL holds nothing new; an open outbox batch may
// still be sealed by age).
//
// ctx (and Interrupt) bound the micro-batch: it is checked between its
// phases (read, decode, each write of the transaction, before COMMIT),
// interrupts DuckDB's statements and stops the part's write before its
// fsync. A micro-batch stopped so is rolled back and its error wraps
// ctx's; the COMMIT itself is never interrupted, so a micro-batch either
// committed whole or left nothing.
func (e *Engine) Step(ctx context.Context) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(e.work, cancel)()
	if e.work.Err() != nil {
		cancel() // interrupted already: AfterFunc would cancel later, on a goroutine of its own
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.usable(); err != nil {
		return 0, err
	}
	if err := e.reloadIfStale(ctx); err != nil {
		return 0, err
	}
	e.applyTables()
	start := time.Now()
	b := e.newBatch()
	ahead := e.ahead
	e.ahead = nil
	if ahead == nil || !ahead.take(e, b) {
		if err := e.readRecords(ctx, b, e.cursor); err != nil {
			return 0, fmt.Errorf("engine: cannot read the WAL from the cursor: %w", err)
		}
	}
	if b.records == 0 && !e.sealDue(e.opts.Now(), false) {
		return 0, nil
	}
	e.process(b)
	// Decided: the records' bytes are garbage now but for the dead
	// letters' raw values, while the next micro-batch's are read ahead.
	b.entries = nil
	var ra *readAhead
	if b.records >= e.opts.BatchRecords {
		ra = e.startReadAhead(ctx, b.cursor, e.nextHorizon(b.dedupeMax, b.horizon)) // more records are likely waiting
	}
	err := e.commit(ctx, b)
	if ra != nil {
		ra = ra.wait(e)
	}
	if ra != nil && err == nil {
		ra.committed(e, b)
	}
	e.recycle(b)
	if err != nil {
		if ra != nil {
			e.decoded = ra.decoded // read from a cursor that did not commit
		}
		return 0, err
	}
	e.ahead = ra
	e.snapshotStats(time.Since(start), b.records)
	if b.records > 0 {
		e.truncateWAL()
	}
	if b.records > 0 && e.opts.OnBatch != nil {
		e.opts.OnBatch(time.Since(start), b.records)
	}
	if b.records > 0 {
		e.log.Debug("engine: micro-batch committed", "records", b.records, "accepted", b.delta[cAccepted],
			"rejected", b.delta[cRejected], "filtered", b.delta[cFiltered], "deduplicated", b.delta[cDeduplicated],
			"accepted_total", e.counters[cAccepted], "took", time.Since(start))
	}
	return b.records, nil
}

// reloadIfStale reloads the state from DuckDB after an abandoned
// micro-batch left the in-memory state ahead of it. Callers hold mu.
func (e *Engine) reloadIfStale(ctx context.Context) error {
	if !e.stale {
		return nil
	}
	if err := e.load(ctx); err != nil {
		return fmt.Errorf("engine: cannot reload the state after an abandoned micro-batch: %w", err)
	}
	e.stale = false
	return nil
}

// DiskBytes returns the size of the DuckDB database file, its
// write-ahead log, the outbox's parts and the dedupe key store: what the
// data directory's byte budget counts for the engine, the outbox and the
// DLQ.
func (e *Engine) DiskBytes() int64 {
	n := e.partsBytes.Load() + e.keys.diskBytes.Load()
	for _, p := range []string{e.path, e.path + ".wal"} {
		if st, err := os.Stat(p); err == nil {
			n += st.Size()
		}
	}
	return n
}

// Stats are the engine's counters and gauges. Counters survive restarts
// (they are persisted with each micro-batch).
type Stats struct {
	RecordsIn int64 // WAL records consumed
	Accepted  int64 // clean rows written to the outbox (after dedupe)
	Rejected  int64 // records dead-lettered
	// RejectedByCode splits Rejected by reject code (event.Code*, plus
	// unknown_topic).
	RejectedByCode map[string]int64
	Filtered       int64
	// FilteredByRule splits Filtered by the name of the filter rule.
	FilteredByRule map[string]int64
	// UnmappedByField counts the accepted rows that carried each unmapped
	// source field (event.Event.UnmappedFields), by its name or dotted
	// path: at most MaxUnmappedNames names, the rest under UnmappedOther.
	UnmappedByField map[string]int64
	Deduplicated    int64 // accepted records dropped as duplicates
	// DedupeExpired counts keys forgotten by the dedupe window, the only
	// way a key is forgotten.
	DedupeExpired int64
	// DedupeTooOld counts events older than the dedupe horizon: kept, but
	// their ids are not remembered (doc.go, "Dedupe").
	DedupeTooOld int64
	DedupeKeys   int64 // keys held now
	// DedupeHeld is the event time the remembered keys span: from the
	// oldest minute held to the newest event, at most DedupeWindow (the
	// configured window, for comparison).
	DedupeHeld   time.Duration
	DedupeWindow time.Duration
	// DedupeFilterBytes is the memory of the key store's Bloom filters.
	DedupeFilterBytes int64
	// DuckDBMemory is the memory DuckDB's buffer manager holds
	// (duckdb_memory(): tables not checkpointed yet, cached blocks, query
	// state), read at most once a second.
	DuckDBMemory int64
	// DedupeFilterHits counts event ids some filter may hold,
	// DedupeDiskLookups the key store reads they cost, and
	// DedupeFalsePositives the reads that found no live key.
	DedupeFilterHits     int64
	DedupeDiskLookups    int64
	DedupeFalsePositives int64
	// Late and TooLate count events after the watermark (window.Late,
	// window.TooLate); both are in the outbox rows.
	Late, TooLate int64
	// NoBaseAmount counts accepted events whose currency the rates table
	// lacks (base_amount NULL).
	NoBaseAmount    int64
	WindowsEmitted  int64
	WindowOverflows int64
	Windows         int   // windows held now
	BatchesSealed   int64 // outbox batches sealed
	// Outbox rows, window rows and estimated bytes not yet shipped: the
	// open batch plus sealed batches not shipped.
	OutboxRowsPending       int64
	OutboxWindowRowsPending int64
	OutboxBytesPending      int64
	SealedBatchesPending    int64
	// OpenSince is when the open outbox batch got its first rows; zero
	// when it is empty.
	OpenSince    time.Time
	DLQRows      int64 // dead-letter rows written (never deleted)
	DLQBytes     int64 // their raw bytes
	DLQReplayed  int64 // dead-letter rows replayed into the outbox
	Watermark    time.Time
	MaxEventTime time.Time
	// Cursor is the committed cursor; CursorLag, per partition, the
	// records between it and the WAL's high water.
	Cursor            wal.Cursor
	CursorLag         map[wal.TopicPartition]int64
	LastBatchDuration time.Duration
	LastBatchRecords  int
}

// Counter names, as persisted in engine_counters.
const (
	cRecordsIn       = "records_in"
	cAccepted        = "accepted"
	cRejected        = "rejected"
	cRejectedPrefix  = "rejected."
	cFiltered        = "filtered"
	cFilteredPrefix  = "filtered."
	cUnmappedPrefix  = "unmapped."
	cDeduplicated    = "deduplicated"
	cDedupeExpired   = "dedupe_expired"
	cDedupeTooOld    = "dedupe_too_old"
	cLate            = "late"
	cTooLate         = "too_late"
	cNoBaseAmount    = "no_base_amount"
	cWindowsEmitted  = "windows_emitted"
	cWindowOverflows = "window_overflows"
	cBatchesSealed   = "batches_sealed"
	cDLQRows         = "dlq_rows"
	cDLQBytes        = "dlq_bytes"
	cDLQReplayed     = "dlq_replayed"
)

// MaxUnmappedNames bounds the unmapped field names counted one by one;
// the fields first seen after that many are counted as UnmappedOther.
const MaxUnmappedNames = 100

// UnmappedOther is the name the unmapped fields past MaxUnmappedNames are
// counted under.
const UnmappedOther = "(other)"

// Stats returns the counters as of the last commit and the current cursor
// lag. It does not wait for a micro-batch in flight.
func (e *Engine) Stats() Stats {
	e.statsMu.Lock()
	s := e.stats
	s.RejectedByCode = cloneMap(s.RejectedByCode)
	s.FilteredByRule = cloneMap(s.FilteredByRule)
	s.UnmappedByField = cloneMap(s.UnmappedByField)
	s.Cursor = s.Cursor.Clone()
	e.statsMu.Unlock()
	s.CursorLag = e.cursorLag()
	return s
}

// OutboxBytesPending returns the raw bytes of the outbox rows not shipped
// yet, as of the last commit. It is Stats().OutboxBytesPending without the
// copies Stats makes, for checks made on every Kafka poll.
func (e *Engine) OutboxBytesPending() int64 {
	e.statsMu.Lock()
	defer e.statsMu.Unlock()
	return e.stats.OutboxBytesPending
}

func cloneMap(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// duckDBMemory returns the memory DuckDB's buffer manager holds, read
// from duckdb_memory() at most once a second of the wall clock. A failed
// read keeps the last figure: the next micro-batch's statements report
// what is wrong with the database. Callers hold mu.
func (e *Engine) duckDBMemory() int64 {
	if now := time.Now(); now.Sub(e.duckRead) >= time.Second {
		var n sql.NullInt64
		if err := e.conn.QueryRowContext(context.Background(), `SELECT sum(memory_usage_bytes)::BIGINT FROM duckdb_memory()`).Scan(&n); err == nil {
			e.duckMemory, e.duckRead = n.Int64, now
		}
	}
	return e.duckMemory
}

// snapshotStats copies the committed state into the Stats snapshot.
// Callers hold mu.
func (e *Engine) snapshotStats(d time.Duration, records int) {
	e.publishLoaded()
	c := e.counters
	s := Stats{
		RecordsIn: c[cRecordsIn], Accepted: c[cAccepted], Rejected: c[cRejected],
		RejectedByCode: map[string]int64{}, Filtered: c[cFiltered], FilteredByRule: map[string]int64{},
		UnmappedByField: map[string]int64{},
		Deduplicated:    c[cDeduplicated], DedupeExpired: c[cDedupeExpired],
		DedupeTooOld: c[cDedupeTooOld], DedupeKeys: e.keys.held, DedupeHeld: e.dedupeHeld(), DedupeWindow: e.opts.DedupeWindow,
		DedupeFilterBytes: e.keys.memory(), DuckDBMemory: e.duckDBMemory(), DedupeFilterHits: e.keys.filterHits.Load(),
		DedupeDiskLookups: e.keys.lookups.Load(), DedupeFalsePositives: e.keys.falsePositives.Load(),
		Late: c[cLate], TooLate: c[cTooLate], NoBaseAmount: c[cNoBaseAmount],
		WindowsEmitted: c[cWindowsEmitted], WindowOverflows: c[cWindowOverflows], Windows: e.windows.Len(),
		BatchesSealed:           c[cBatchesSealed],
		OutboxRowsPending:       e.open.rows + e.sealed.rows,
		OutboxWindowRowsPending: e.open.windowRows + e.sealed.windowRows,
		OutboxBytesPending:      e.open.bytes + e.sealed.bytes,
		SealedBatchesPending:    e.sealed.batches,
		OpenSince:               e.open.since,
		DLQRows:                 c[cDLQRows], DLQBytes: c[cDLQBytes], DLQReplayed: c[cDLQReplayed],
		Watermark: e.windows.Watermark(), MaxEventTime: e.windows.MaxEventTime(),
		Cursor: e.cursor.Clone(), LastBatchDuration: d, LastBatchRecords: records,
	}
	for name, v := range c {
		switch {
		case len(name) > len(cRejectedPrefix) && name[:len(cRejectedPrefix)] == cRejectedPrefix:
			s.RejectedByCode[name[len(cRejectedPrefix):]] = v
		case len(name) > len(cFilteredPrefix) && name[:len(cFilteredPrefix)] == cFilteredPrefix:
			s.FilteredByRule[name[len(cFilteredPrefix):]] = v
		case len(name) > len(cUnmappedPrefix) && name[:len(cUnmappedPrefix)] == cUnmappedPrefix:
			s.UnmappedByField[name[len(cUnmappedPrefix):]] = v
		}
	}
	e.statsMu.Lock()
	if d == 0 && records == 0 {
		s.LastBatchDuration, s.LastBatchRecords = e.stats.LastBatchDuration, e.stats.LastBatchRecords
	}
	e.stats = s
	e.statsMu.Unlock()
}

// dedupeHeld is the event time the remembered keys span. Callers hold mu.
func (e *Engine) dedupeHeld() time.Duration {
	oldest, ok := e.keys.oldest()
	if !ok || e.dedupeMax == 0 {
		return 0
	}
	return max(time.Duration(e.dedupeMax-oldest*1000), 0)
}

// sortedPartitions returns the keys of m in (topic, partition) order.
func sortedPartitions[V any](m map[wal.TopicPartition]V) []wal.TopicPartition {
	out := make([]wal.TopicPartition, 0, len(m))
	for tp := range m {
		out = append(out, tp)
	}
	slices.SortFunc(out, wal.TopicPartition.Compare)
	return out
}
