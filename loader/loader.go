package loader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/offload/offload/engine"
)

// Class says whether a failed load may succeed if tried again.
type Class int

const (
	// Retryable errors (network, 5xx, 429, session expiry, the warehouse
	// away) are retried with backoff; the batch stays next in line.
	Retryable Class = iota
	// Permanent errors (SQL compilation, schema mismatch, access denied)
	// park the batch; later batches go on.
	Permanent
)

// Sink is a warehouse the loader ships sealed outbox batches to.
type Sink interface {
	// Prepare creates what loads need (tables, ledger, stage) where
	// missing. The loader calls it before its first load and again after
	// a failure.
	Prepare(ctx context.Context) error
	// Loaded tells whether the warehouse's load ledger holds batch id.
	Loaded(ctx context.Context, id string) (bool, error)
	// Load loads an exported batch. Its rows, its window rows and its
	// ledger row commit in one warehouse transaction, or none of them do.
	Load(ctx context.Context, x engine.Export) error
	// Classify tells whether an error of Prepare, Loaded or Load is worth
	// retrying.
	Classify(err error) Class
	Close() error
}

// errInLedger is what a sink's Load returns when its transaction finds
// the batch in the ledger after all (a COMMIT of an earlier attempt that
// ended after the ledger lookup): the loader marks it shipped as it does a
// batch the lookup found.
var errInLedger = errors.New("the batch is in the ledger already")

// Outbox is what the loader needs of the engine (*engine.Engine).
type Outbox interface {
	SealedBatches() ([]engine.BatchInfo, error)
	ExportBatch(ctx context.Context, id, dir string) (engine.Export, error)
	MarkShipped(id string) error
	Park(id, reason string) error
	RetryParked(id string) error
	DeleteShipped(cutoff time.Time) (int, error)
}

// Batch orders.
const (
	OldestFirst = "oldest"
	NewestFirst = "newest"
)

// Options configures a Loader. Zero values take the defaults in brackets.
type Options struct {
	Sink   Sink
	Outbox Outbox
	// Dir holds exported batch files while they are shipped.
	Dir string
	// QuarantineDir receives exported files that changed on disk between
	// their export and their load (their checksum differs); they are
	// kept there for inspection and never loaded or deleted. New counts
	// the files it holds already.
	QuarantineDir string
	// Order is OldestFirst [default] or NewestFirst: after an outage,
	// newest-first brings fresh data while the backlog drains.
	Order string
	// RetryBase and RetryMax bound the backoff between retries [1s, 5m].
	RetryBase, RetryMax time.Duration
	// BreakerFailures consecutive retryable failures open the circuit [5];
	// it lets one probe through after BreakerCooldown [30s].
	BreakerFailures int
	BreakerCooldown time.Duration
	// ShippingWindows, if any, are the daily periods (local time) when
	// loads may start.
	ShippingWindows []ShippingWindow
	// UplinkRate caps the average upload rate in bytes a second [none].
	UplinkRate int64
	// ShippedGrace is how long a shipped batch's rows stay in the outbox
	// [24h].
	ShippedGrace time.Duration
	// LoadTimeout bounds one attempt at a batch, from the ledger lookup to
	// the commit [30m]: a warehouse that hangs is a retryable failure.
	LoadTimeout time.Duration
	// UnansweredAfter is the floor of the rule that tells a hung
	// warehouse from a slow load [30s]: an attempt in flight for longer
	// than max(UnansweredAfter, 3 × the slowest of the last 8 loads) is
	// reported as Status.Unanswered (docs/LOADER.md).
	UnansweredAfter time.Duration
	// OnLoaded, if set, is called after each batch is loaded and marked
	// shipped (not for one found in the ledger already), with the time
	// it was marked.
	OnLoaded func(x engine.Export, at time.Time)
	// Poll is how often an idle loader looks for sealed batches [1s].
	Poll   time.Duration
	Logger *slog.Logger
	Now    func() time.Time
}

func (o *Options) setDefaults() {
	if o.Order == "" {
		o.Order = OldestFirst
	}
	if o.RetryBase == 0 {
		o.RetryBase = time.Second
	}
	if o.RetryMax == 0 {
		o.RetryMax = 5 * time.Minute
	}
	if o.BreakerFailures == 0 {
		o.BreakerFailures = 5
	}
	if o.BreakerCooldown == 0 {
		o.BreakerCooldown = 30 * time.Second
	}
	if o.ShippedGrace == 0 {
		o.ShippedGrace = 24 * time.Hour
	}
	if o.LoadTimeout == 0 {
		o.LoadTimeout = 30 * time.Minute
	}
	if o.UnansweredAfter == 0 {
		o.UnansweredAfter = 30 * time.Second
	}
	if o.Poll == 0 {
		o.Poll = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Loader states, as Status reports them.
const (
	StateIdle     = "idle"     // nothing sealed to ship
	StateLoading  = "loading"  // a batch is on its way
	StateRetrying = "retrying" // waiting out the backoff after a retryable failure
	StateOpen     = "open"     // circuit open: waiting for the cooldown
	StatePaused   = "paused"   // paused by the operator
	StateWindow   = "window"   // outside the shipping windows
	StateStopped  = "stopped"  // Run has returned
	stateStarting = "starting" // before the first pass
)

// Status is a snapshot of the loader.
type Status struct {
	State   string
	Circuit string
	// Batch is the batch being loaded or retried, if any.
	Batch string
	// LastError is the last failure (from the warehouse, the export or
	// the check of the exported files against their checksums),
	// with its time; empty after a success.
	LastError   string
	LastErrorAt time.Time
	// RetryAt is when the next attempt starts while retrying, open or
	// outside the shipping windows.
	RetryAt time.Time
	// Attempts counts consecutive failures of the current batch.
	Attempts int
	// Loaded counts batches loaded; AlreadyLoaded those found in the
	// ledger already (a load whose commit response was lost).
	Loaded, AlreadyLoaded int64
	// Rows, WindowRows and BytesShipped count what Loaded batches held.
	Rows, WindowRows, BytesShipped int64
	// Retries counts retryable failures; Parked counts batches parked
	// (refused by the warehouse for good, or with exported files damaged
	// twice in a row).
	Retries, Parked int64
	// WarehouseDuplicates counts rows the sink kept out because the
	// warehouse held their event already (Snowflake with MergeRows).
	WarehouseDuplicates int64
	LastLoadAt          time.Time
	LastLoadTook        time.Duration
	// Unanswered is how long the warehouse has been working on the
	// attempt in flight, once that is longer than loads take
	// (Options.UnansweredAfter); 0 otherwise. The loader's State stays
	// "loading" meanwhile: the attempt ends at LoadTimeout.
	Unanswered time.Duration
	// WarehouseFailing is set by a retryable failure of the warehouse and
	// cleared by a load: while it is set, an attempt in flight probes a
	// warehouse that was failing.
	WarehouseFailing bool
	// Quarantined counts the files in QuarantineDir: exported files that
	// no longer matched their checksum, those found there when the loader
	// started plus those moved there since; LastQuarantined is the
	// latest one's path.
	Quarantined     int64
	LastQuarantined string
}

// Loader ships sealed outbox batches to a Sink, one at a time.
type Loader struct {
	opts    Options
	log     *slog.Logger
	breaker *breaker
	pacer   pacer
	rng     *rand.Rand

	wake chan struct{}

	mu       sync.Mutex
	paused   bool
	status   Status
	prepared bool
	// attemptSince is when the warehouse attempt in flight began (zero
	// between attempts); recentTook holds the last loads' durations.
	attemptSince time.Time
	recentTook   []time.Duration
}

// recentLoads is how many of the last loads' durations set the limit
// past which an attempt is unanswered.
const recentLoads = 8

// New returns a loader; Run starts it.
func New(opts Options) (*Loader, error) {
	opts.setDefaults()
	if opts.Sink == nil || opts.Outbox == nil || opts.Dir == "" || opts.QuarantineDir == "" {
		return nil, errors.New("loader: Sink, Outbox, Dir and QuarantineDir are required")
	}
	if opts.Order != OldestFirst && opts.Order != NewestFirst {
		return nil, fmt.Errorf("loader: order %q is not allowed; use %s or %s", opts.Order, OldestFirst, NewestFirst)
	}
	if opts.RetryBase <= 0 || opts.RetryMax < opts.RetryBase {
		return nil, fmt.Errorf("loader: retry_base %s and retry_max %s: want 0 < retry_base <= retry_max", opts.RetryBase, opts.RetryMax)
	}
	l := &Loader{
		opts: opts, log: opts.Logger,
		breaker: newBreaker(opts.BreakerFailures, opts.BreakerCooldown),
		pacer:   pacer{rate: opts.UplinkRate},
		rng:     rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x10ad)),
		wake:    make(chan struct{}, 1),
	}
	l.status = Status{State: stateStarting, Circuit: CircuitClosed}
	// Files quarantined by earlier runs are still there: count them, so
	// the status and the metric say what the directory holds.
	n, newest, err := countQuarantined(opts.QuarantineDir)
	if err != nil {
		l.log.Error("loader: cannot count the files in the outbox quarantine directory", "dir", opts.QuarantineDir, "err", err)
	}
	l.status.Quarantined, l.status.LastQuarantined = n, newest
	if n > 0 {
		l.log.Warn("loader: the outbox quarantine directory holds damaged files from earlier runs; never loaded",
			"dir", opts.QuarantineDir, "files", n, "latest", newest)
	}
	return l, nil
}

// Status returns a snapshot.
func (l *Loader) Status() Status {
	l.mu.Lock()
	st := l.status
	if !l.attemptSince.IsZero() {
		if d := l.opts.Now().Sub(l.attemptSince); d > l.unansweredLimit() {
			st.Unanswered = d
		}
	}
	l.mu.Unlock()
	if d, ok := l.opts.Sink.(interface{ Duplicates() int64 }); ok {
		st.WarehouseDuplicates = d.Duplicates()
	}
	return st
}

// unansweredLimit is how long an attempt may take before the warehouse
// counts as not answering: max(UnansweredAfter, 3 × the slowest recent
// load). l.mu is held.
func (l *Loader) unansweredLimit() time.Duration {
	limit := l.opts.UnansweredAfter
	for _, d := range l.recentTook {
		limit = max(limit, 3*d)
	}
	return limit
}

// Pause stops the loader after the batch in flight; Resume starts it again.
func (l *Loader) Pause() {
	l.mu.Lock()
	l.paused = true
	l.mu.Unlock()
	l.poke()
}

// Resume undoes Pause, and ends a backoff or an open circuit's cooldown
// early: the operator says the warehouse is back.
func (l *Loader) Resume() {
	l.mu.Lock()
	l.paused = false
	l.status.RetryAt = time.Time{}
	l.breaker.openedAt = time.Time{} // an open circuit goes half-open: one probe
	l.mu.Unlock()
	l.poke()
}

// SetPolicy replaces the shipping windows and the uplink rate (a reload).
func (l *Loader) SetPolicy(windows []ShippingWindow, uplinkRate int64) {
	l.mu.Lock()
	l.opts.ShippingWindows = windows
	l.pacer.rate = uplinkRate
	l.mu.Unlock()
	l.poke()
}

// RetryParked makes parked batch id sealed again and wakes the loader.
func (l *Loader) RetryParked(id string) error {
	if err := l.opts.Outbox.RetryParked(id); err != nil {
		return err
	}
	l.log.Info("loader: parked batch queued again by the operator", "batch", id)
	l.poke()
	return nil
}

func (l *Loader) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *Loader) set(f func(s *Status)) {
	l.mu.Lock()
	f(&l.status)
	l.mu.Unlock()
}

// Run ships batches until ctx is done. A load in flight when ctx ends is
// abandoned: the warehouse transaction does not commit (or, if it did,
// the ledger says so next time) and the batch stays in the outbox. Run
// returns nil then, or the error of the outbox (DuckDB) it cannot go on
// without.
func (l *Loader) Run(ctx context.Context) error {
	defer l.set(func(s *Status) { s.State = StateStopped })
	var lastCleanup time.Time
	for ctx.Err() == nil {
		now := l.opts.Now()
		if until, state := l.blocked(now); state != "" {
			l.set(func(s *Status) { s.State = state })
			l.sleep(ctx, until)
			continue
		}
		b, ok, err := l.next()
		if err != nil {
			return err
		}
		if !ok {
			if now.Sub(lastCleanup) >= time.Minute {
				lastCleanup = now
				if n, err := l.opts.Outbox.DeleteShipped(now.Add(-l.opts.ShippedGrace)); err != nil {
					return err
				} else if n > 0 {
					l.log.Info("loader: deleted the rows of shipped batches past the grace period", "batches", n, "grace", l.opts.ShippedGrace)
				}
			}
			l.set(func(s *Status) { s.State, s.Batch = StateIdle, "" })
			l.sleep(ctx, now.Add(l.opts.Poll))
			continue
		}
		if err := l.ship(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// blocked tells whether the loader must wait now, until when, and in
// which state.
func (l *Loader) blocked(now time.Time) (time.Time, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.paused {
		return time.Time{}, StatePaused
	}
	if open, at := nextOpen(l.opts.ShippingWindows, now); !open {
		l.status.RetryAt = at
		return at, StateWindow
	}
	if ok, at := l.breaker.allow(now); !ok {
		l.status.RetryAt = at
		return at, StateOpen
	}
	l.status.Circuit = l.breaker.state
	if now.Before(l.status.RetryAt) {
		return l.status.RetryAt, l.status.State
	}
	return time.Time{}, ""
}

// sleep waits until t (zero: until woken), ctx is done or the loader is
// woken.
func (l *Loader) sleep(ctx context.Context, t time.Time) {
	var timer <-chan time.Time
	if !t.IsZero() {
		d := t.Sub(l.opts.Now())
		if d <= 0 {
			return
		}
		tm := time.NewTimer(d)
		defer tm.Stop()
		timer = tm.C
	}
	select {
	case <-ctx.Done():
	case <-l.wake:
	case <-timer:
	}
}

// next picks the batch to ship: the oldest or newest sealed one.
func (l *Loader) next() (engine.BatchInfo, bool, error) {
	all, err := l.opts.Outbox.SealedBatches()
	if err != nil {
		return engine.BatchInfo{}, false, fmt.Errorf("loader: %w", err)
	}
	var pick engine.BatchInfo
	found := false
	for _, b := range all {
		if b.State != engine.BatchSealed {
			continue
		}
		if !found || l.opts.Order == NewestFirst {
			pick, found = b, true
		}
	}
	return pick, found, nil
}

// ship takes one batch to the warehouse. Failures of the warehouse are
// handled here (retry or park); an error it returns is the outbox's.
func (l *Loader) ship(ctx context.Context, b engine.BatchInfo) error {
	l.set(func(s *Status) { s.State, s.Batch = StateLoading, b.ID })
	x, err := l.opts.Outbox.ExportBatch(ctx, b.ID, l.opts.Dir)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		var parts *engine.PartsDamagedError
		if errors.As(err, &parts) {
			return l.fail(b.ID, l.quarantineParts(parts), false)
		}
		// A local failure (disk full, say): retried like the warehouse's,
		// without counting against the circuit.
		return l.fail(b.ID, fmt.Errorf("export: %w", err), false)
	}
	// x changes if its files are found damaged and exported again; a
	// damaged file that could not be quarantined is kept.
	var kept []string
	defer func() { removeFiles(x, kept) }()
	l.mu.Lock()
	start := l.pacer.book(l.opts.Now(), x.FileBytes)
	l.mu.Unlock()
	if start.After(l.opts.Now()) {
		l.sleep(ctx, start)
		if ctx.Err() != nil {
			return nil
		}
	}
	began := time.Now()
	l.mu.Lock()
	l.attemptSince = l.opts.Now()
	l.mu.Unlock()
	lctx, cancel := context.WithTimeout(ctx, l.opts.LoadTimeout)
	already, err := l.load(lctx, &x)
	cancel()
	l.mu.Lock()
	l.attemptSince = time.Time{}
	l.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		var local *localError
		var park *parkError
		if errors.As(err, &park) {
			kept = park.kept
		}
		return l.fail(b.ID, err, !errors.As(err, &local) && park == nil)
	}
	if err := l.opts.Outbox.MarkShipped(b.ID); err != nil {
		// The batch is in the warehouse and its ledger: after a restart
		// Loaded says so and the batch is marked then.
		return fmt.Errorf("loader: batch %s is loaded but cannot be marked shipped: %w", b.ID, err)
	}
	took := time.Since(began)
	l.mu.Lock()
	l.breaker.success()
	s := &l.status
	s.Circuit, s.Attempts, s.LastError, s.LastErrorAt, s.RetryAt = l.breaker.state, 0, "", time.Time{}, time.Time{}
	s.LastLoadAt, s.LastLoadTook, s.WarehouseFailing = l.opts.Now(), took, false
	if l.recentTook = append(l.recentTook, took); len(l.recentTook) > recentLoads {
		l.recentTook = l.recentTook[1:]
	}
	if already {
		s.AlreadyLoaded++
	} else {
		s.Loaded++
		s.Rows += x.Rows
		s.WindowRows += x.WindowRows
		s.BytesShipped += x.FileBytes
	}
	l.mu.Unlock()
	if !already && l.opts.OnLoaded != nil {
		l.opts.OnLoaded(x, l.opts.Now())
	}
	if already {
		l.log.Info("loader: batch was in the warehouse already (a load whose answer was lost); marked shipped", "batch", b.ID)
	} else {
		l.log.Info("loader: batch loaded", "batch", b.ID, "rows", x.Rows, "window_rows", x.WindowRows,
			"bytes", x.FileBytes, "took", took.Round(time.Millisecond))
	}
	return nil
}

// load runs the sink's steps for x and tells whether the ledger had it
// already. Just before the sink reads the files, they are checked against
// their checksums (and exported again if damaged, replacing *x); a
// failure of that check is a localError.
func (l *Loader) load(ctx context.Context, x *engine.Export) (bool, error) {
	l.mu.Lock()
	prepared := l.prepared
	l.mu.Unlock()
	if !prepared {
		if err := l.opts.Sink.Prepare(ctx); err != nil {
			return false, fmt.Errorf("prepare: %w", err)
		}
		l.mu.Lock()
		l.prepared = true
		l.mu.Unlock()
	}
	done, err := l.opts.Sink.Loaded(ctx, x.ID)
	if err != nil {
		return false, fmt.Errorf("ledger lookup: %w", err)
	}
	if done {
		return true, nil
	}
	if *x, err = l.verified(ctx, *x); err != nil {
		return false, err
	}
	if err := l.opts.Sink.Load(ctx, *x); !errors.Is(err, errInLedger) {
		return false, err
	}
	return true, nil
}

// fail handles a failed attempt at batch id: park it if the error is
// permanent or a parkError (exported files that cannot be shipped
// safely), else schedule a retry (and, for the warehouse's failures,
// count it against the circuit). It returns only the outbox's errors.
func (l *Loader) fail(id string, err error, warehouse bool) error {
	now := l.opts.Now()
	class := Retryable
	var park *parkError
	unsafe := errors.As(err, &park)
	if unsafe {
		class = Permanent
	} else if warehouse {
		class = l.opts.Sink.Classify(err)
	}
	l.mu.Lock()
	l.prepared = false
	s := &l.status
	s.LastError, s.LastErrorAt = err.Error(), now
	if class == Permanent {
		s.Attempts, s.Parked = 0, s.Parked+1
		l.mu.Unlock()
		if unsafe {
			l.log.Error("loader: the batch's exported files cannot be shipped safely; parked, later batches go on "+
				"(check the disk and memory, then retry it)", "batch", id, "err", err)
		} else {
			l.log.Error("loader: the warehouse refused the batch for good; parked (retry it once the cause is fixed)",
				"batch", id, "err", err)
		}
		if perr := l.opts.Outbox.Park(id, err.Error()); perr != nil {
			return fmt.Errorf("loader: cannot park batch %s: %w", id, perr)
		}
		return nil
	}
	s.Attempts++
	s.Retries++
	s.WarehouseFailing = s.WarehouseFailing || warehouse
	wait := backoff(s.Attempts, l.opts.RetryBase, l.opts.RetryMax, l.rng)
	s.RetryAt = now.Add(wait)
	s.State = StateRetrying
	open := warehouse && l.breaker.failure(now)
	if open {
		s.State = StateOpen
		if at := l.breaker.openedAt.Add(l.breaker.cooldown); at.After(s.RetryAt) {
			s.RetryAt = at
		}
	}
	s.Circuit = l.breaker.state
	attempts, circuit := s.Attempts, s.Circuit
	l.mu.Unlock()
	l.log.Warn("loader: load failed; will retry", "batch", id, "attempt", attempts, "retry_in", wait.Round(time.Millisecond),
		"circuit", circuit, "err", err)
	return nil
}

// removeFiles deletes x's files, except those in keep.
func removeFiles(x engine.Export, keep []string) {
	for _, f := range x.Files() {
		if !slices.Contains(keep, f) {
			_ = os.Remove(f)
		}
	}
}
