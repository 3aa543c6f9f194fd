package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/offload/offload/engine/event"
	"github.com/offload/offload/engine/window"
	"github.com/offload/offload/wal"
)

// Defaults.
const (
	DefaultInterval     = time.Second
	DefaultBatchRecords = 50000
	DefaultMemoryLimit  = 512 << 20
	DefaultThreads      = 2
	DefaultDedupeWindow = 24 * time.Hour
	DefaultDedupeMemory = 256 << 20
	DefaultSealRows     = 1_000_000
	DefaultSealBytes    = 128 << 20
	DefaultSealAge      = 5 * time.Minute

	// minMemoryLimit is the smallest memory_limit DuckDB is given.
	minMemoryLimit = 64 << 20
	// minDedupeMemory is the smallest DedupeMemory.
	minDedupeMemory = 1 << 20
	// dedupeBitsPerKey is the filter memory a remembered key needs for
	// the filters to answer ~99.5 % of fresh ids without a disk read.
	dedupeBitsPerKey = 16
	// maxApplianceID bounds the appliance id, which prefixes batch ids.
	maxApplianceID = 64
)

// Options configures an Engine. Call EnsureDefaults, then Validate (Open
// does both).
type Options struct {
	// Dir is the data directory; the DuckDB database is Dir/engine.duckdb.
	Dir string
	// ApplianceID prefixes every outbox batch id: [A-Za-z0-9._-], 1 to 64
	// characters.
	ApplianceID string
	// WAL is the write-ahead log the engine consumes. The engine does not
	// close it.
	WAL *wal.WAL
	// KeepUntilLoaded keeps WAL entries until every batch holding their
	// records is shipped and every window they fed is shipped in its last
	// version, instead of until the engine consumed them: the
	// `kafka.delivery: end-to-end` mode (docs/ARCHITECTURE.md, "End-to-end
	// delivery"). Loaded then tells which offsets may be committed.
	KeepUntilLoaded bool
	// Topics gives each topic's decode, clean and validate configuration.
	// A WAL record of a topic missing here goes to the dead-letter table
	// with code unknown_topic.
	Topics map[string]event.Config
	// Interval is how often a micro-batch runs (default 1s); a micro-batch
	// also runs as soon as BatchRecords records are waiting.
	Interval time.Duration
	// BatchRecords bounds a micro-batch (default 50000 records). Micro-batches
	// are cut by WAL position, so a given WAL always gives the same batches
	// when read from the same cursor.
	BatchRecords int
	// MemoryLimit is DuckDB's memory_limit in bytes (default 512 MiB).
	MemoryLimit int64
	// Threads is DuckDB's threads setting (default 2).
	Threads int
	// DedupeWindow is how long, in event time, an event id is remembered
	// (default 24h). See doc.go, "Dedupe".
	DedupeWindow time.Duration
	// DedupeMemory is the memory of the dedupe key store's Bloom filters
	// (default 256 MiB). The keys themselves are on disk; the filters
	// answer a fresh id without reading it up to DedupeRate events a
	// second, and above it they answer more ids with a disk read, never
	// wrongly (doc.go, "Dedupe").
	DedupeMemory int64
	// Window configures the tumbling windows.
	Window window.Options
	// Seal says when the open outbox batch is sealed.
	Seal SealPolicy
	// Logger receives the engine's messages; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock for DLQ, emission and seal times, for sealing by
	// age and for the dedupe key store's early memtable flushes
	// (internal/memflush); nil means time.Now.
	Now func() time.Time
	// OnBatch, if set, is called after each micro-batch that consumed
	// records, with its duration (read, process, commit) and its records.
	OnBatch func(took time.Duration, records int)
	// TestHook is for tests only; production code leaves it nil. It is
	// called with the micro-batch's context at named points inside each
	// micro-batch's transaction (begin, part, rows, dlq, windows, state,
	// commit) and after it (keys); an error it returns fails the
	// micro-batch there. A hook that blocks until the context is done
	// stands for a slow disk under a shutdown (internal/appliance's
	// tests).
	TestHook func(ctx context.Context, point string) error
}

// DedupeRate is the rate, in unique events a second, up to which
// DedupeMemory holds the filters of a full DedupeWindow at
// dedupeBitsPerKey: memory × 8 / (16 bits × window × 1.5), the 1.5 being
// the filters of the slices only partly inside the window (doc.go,
// "Dedupe"). 256 MiB over 24h: 1,035 events a second.
func (o *Options) DedupeRate() float64 {
	return float64(o.DedupeMemory) * 8 / (dedupeBitsPerKey * o.DedupeWindow.Seconds() * 1.5)
}

// SealPolicy says when the open outbox batch is sealed: after the
// micro-batch that brings it to Rows clean rows or Bytes estimated bytes, or
// once it has been open for Age. Rows and Bytes make sealing a function of
// the WAL alone; Age is measured on the engine's clock from the commit of
// the micro-batch that opened the batch (not from the rows' ingest times,
// so draining a backlog after downtime still gives full batches).
type SealPolicy struct {
	Rows  int64         // default 1,000,000
	Bytes int64         // default 128 MiB of raw record bytes (window rows count 128 bytes each)
	Age   time.Duration // default 5m
}

// EnsureDefaults fills options left at their zero value.
func (o *Options) EnsureDefaults() {
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.BatchRecords == 0 {
		o.BatchRecords = DefaultBatchRecords
	}
	if o.MemoryLimit == 0 {
		o.MemoryLimit = DefaultMemoryLimit
	}
	if o.Threads == 0 {
		o.Threads = DefaultThreads
	}
	if o.DedupeWindow == 0 {
		o.DedupeWindow = DefaultDedupeWindow
	}
	if o.DedupeMemory == 0 {
		o.DedupeMemory = DefaultDedupeMemory
	}
	o.Window.EnsureDefaults()
	if o.Seal.Rows == 0 {
		o.Seal.Rows = DefaultSealRows
	}
	if o.Seal.Bytes == 0 {
		o.Seal.Bytes = DefaultSealBytes
	}
	if o.Seal.Age == 0 {
		o.Seal.Age = DefaultSealAge
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Validate checks the options (after EnsureDefaults) and returns every
// problem, each naming its option and the allowed values.
func (o *Options) Validate() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if o.Dir == "" {
		bad("engine: Dir (the data directory) is required")
	}
	if !validApplianceID(o.ApplianceID) {
		bad("engine: appliance id %q is not allowed; use 1 to %d characters of [A-Za-z0-9._-]", o.ApplianceID, maxApplianceID)
	}
	if o.WAL == nil {
		bad("engine: WAL is required")
	}
	if len(o.Topics) == 0 {
		bad("engine: no topics configured; give each Kafka topic its mapping")
	}
	names := make([]string, 0, len(o.Topics))
	for name := range o.Topics {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		cfg := o.Topics[name]
		cfg.EnsureDefaults()
		if err := cfg.Validate("topics." + name); err != nil {
			errs = append(errs, strings.Split(err.Error(), "\n")...)
		}
	}
	if o.Interval < 10*time.Millisecond || o.Interval > time.Hour {
		bad("engine.interval: %s is out of range; use 10ms to 1h", o.Interval)
	}
	if o.BatchRecords < 1 || o.BatchRecords > 10_000_000 {
		bad("engine.batch_records: %d is out of range; use 1 to 10000000", o.BatchRecords)
	}
	if o.MemoryLimit < minMemoryLimit {
		bad("engine.memory_limit: %d bytes is too small; use at least 64MiB", o.MemoryLimit)
	}
	if o.Threads < 1 || o.Threads > 256 {
		bad("engine.threads: %d is out of range; use 1 to 256", o.Threads)
	}
	if o.DedupeWindow < time.Minute {
		bad("engine.dedupe_window: %s is too short; use at least 1m", o.DedupeWindow)
	}
	if o.DedupeMemory < minDedupeMemory {
		bad("engine.dedupe_memory: %d bytes is too small; use at least 1MiB", o.DedupeMemory)
	}
	if err := o.Window.Validate("engine"); err != nil {
		errs = append(errs, strings.Split(err.Error(), "\n")...)
	}
	if o.Seal.Rows < 1 {
		bad("outbox.seal_rows: %d must be positive", o.Seal.Rows)
	}
	if o.Seal.Bytes < 1 {
		bad("outbox.seal_bytes: %d must be positive", o.Seal.Bytes)
	}
	if o.Seal.Age < time.Second {
		bad("outbox.seal_age: %s is too short; use at least 1s", o.Seal.Age)
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

func validApplianceID(s string) bool {
	if len(s) == 0 || len(s) > maxApplianceID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
