package admin

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/offload/offload/engine"
	"github.com/offload/offload/internal/ingest"
	"github.com/offload/offload/loader"
	"github.com/offload/offload/wal"
)

// Sources are the parts of the pipeline the admin endpoint reports on.
// Ingest and Loader may be nil (not running, no warehouse).
type Sources struct {
	Ingest *ingest.Ingest
	WAL    *wal.WAL
	Engine *engine.Engine
	Loader *loader.Loader
	// Budget is disk_budget in bytes.
	Budget int64
	// Delivery is kafka.delivery: custody or end-to-end.
	Delivery string
	// WALQuarantine is what `offload wal repair` moved out of the WAL.
	WALQuarantine WALQuarantine
}

// WALQuarantine counts damaged WAL entries moved to quarantine, read from the
// quarantine manifests at start: they are never loaded.
type WALQuarantine struct {
	Entries, Records int64
	Dir              string
}

// Metrics holds offload's Prometheus metrics (docs/METRICS.md). Counters
// and gauges are read from the pipeline's own statistics at each scrape;
// the histograms are fed by the hooks below.
type Metrics struct {
	Registry *prometheus.Registry

	appendSeconds      prometheus.Histogram
	produceToDurable   prometheus.Histogram
	durableToWarehouse prometheus.Histogram
	engineBatch        prometheus.Histogram
	watchdog           atomic.Int64 // Unix nanoseconds of the last ping

	src     Sources
	version string
	now     func() time.Time
	usage   *rater // disk used over time, for the runway
}

// latencyBuckets span 1 ms to ~18 min.
var latencyBuckets = prometheus.ExponentialBuckets(0.001, 2, 21)

// NewMetrics registers the metrics; SetSources must be called before the
// first scrape.
func NewMetrics(version string) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		appendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "offload_wal_append_seconds",
			Help: "One WAL append: write and fsync (appends running together share one fsync).", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}),
		produceToDurable: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "offload_produce_to_durable_seconds",
			Help: "From a record's Kafka timestamp to its WAL append being fsync'd.", Buckets: latencyBuckets}),
		durableToWarehouse: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "offload_durable_to_warehouse_seconds",
			Help: "For each loaded batch: from its oldest row's WAL-durable time to the warehouse commit.", Buckets: latencyBuckets}),
		engineBatch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "offload_engine_batch_seconds",
			Help: "One micro-batch: read, process, commit.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		version: version, now: time.Now,
		usage: newRater(time.Minute),
	}
	m.watchdog.Store(time.Now().UnixNano())
	m.Registry.MustRegister(m.appendSeconds, m.produceToDurable, m.durableToWarehouse, m.engineBatch, (*collector)(m),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// SetSources names the pipeline's parts, once they are all open (the
// hooks below are wired into them while they open).
func (m *Metrics) SetSources(src Sources) { m.src = src }

// ObserveDurable is ingest's OnDurable hook.
func (m *Metrics) ObserveDurable(took time.Duration, recs []wal.Record, at time.Time) {
	m.appendSeconds.Observe(took.Seconds())
	ms := at.UnixMilli()
	for i := range recs {
		m.produceToDurable.Observe(float64(ms-recs[i].Timestamp) / 1e3)
	}
}

// ObserveLoaded is the loader's OnLoaded hook.
func (m *Metrics) ObserveLoaded(x engine.Export, at time.Time) {
	if !x.OldestIngest.IsZero() {
		m.durableToWarehouse.Observe(at.Sub(x.OldestIngest).Seconds())
	}
}

// ObserveBatch is the engine's OnBatch hook.
func (m *Metrics) ObserveBatch(took time.Duration, _ int) { m.engineBatch.Observe(took.Seconds()) }

// Watchdog records that the main loop proved alive at t.
func (m *Metrics) Watchdog(t time.Time) { m.watchdog.Store(t.UnixNano()) }

// collector reads the pipeline's statistics at each scrape.
type collector Metrics

// Describe sends every description up front: at registration the
// pipeline's parts are not open yet.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range scrapeDescs {
		ch <- d
	}
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// Descriptions of the metrics read at scrape time, as in docs/METRICS.md.
var (
	dIngestRecords     = desc("offload_ingest_records_total", "Records made durable in the WAL.")
	dIngestBytes       = desc("offload_ingest_bytes_total", "Bytes (key + value) of those records.")
	dIngestDuplicates  = desc("offload_ingest_duplicates_total", "Re-fetched records dropped because the WAL held them already.")
	dIngestFetchErrors = desc("offload_ingest_fetch_errors_total", "Failed fetches.")
	dTopicRecreations  = desc("offload_kafka_topic_recreations_total", "Consumed topics seen under a new topic ID (deleted and created again).")
	dIngestCommitErrs  = desc("offload_ingest_commit_errors_total", "Failed offset commits (retried).")
	dIngestPaused      = desc("offload_ingest_paused", "1 while fetching is paused for the disk budget.")
	dIngestPauses      = desc("offload_ingest_pauses_total", "Times fetching was paused for the budget.")
	dIngestReady       = desc("offload_ingest_ready", "1 while consuming.")
	dKafkaLag          = desc("offload_kafka_lag_records", "Partition high watermark minus the committed offset.", "topic", "partition")
	dKafkaUncommitted  = desc("offload_kafka_uncommitted_age_seconds", "How long the oldest record durable in the WAL has waited for its offset commit (end-to-end delivery: for its warehouse load); 0 when all are committed.", "topic", "partition")
	dWALBytes          = desc("offload_wal_bytes", "Live bytes of records not yet consumed by the engine (kafka.delivery end-to-end: not yet loaded).")
	dWALRecords        = desc("offload_wal_records", "Live records in the WAL.")
	dWALQuarEntries    = desc("offload_wal_quarantined_entries", "Damaged WAL entries `offload wal repair` moved to quarantine (counted at start).")
	dWALQuarRecords    = desc("offload_wal_quarantined_records", "Records in those entries; they are never loaded.")
	dEngineRecords     = desc("offload_engine_records_total", "WAL records consumed.")
	dEngineAccepted    = desc("offload_engine_accepted_total", "Clean rows written to the outbox.")
	dEngineRejected    = desc("offload_engine_rejected_total", "Records dead-lettered, by reason code.", "code")
	dEngineFiltered    = desc("offload_engine_filtered_total", "Records dropped by filter rules, by rule.", "rule")
	dEngineUnmapped    = desc("offload_engine_unmapped_fields_total", fmt.Sprintf("Accepted rows that carried a source field no mapping reads, by field (at most %d names, the rest as %s).", engine.MaxUnmappedNames, engine.UnmappedOther), "field")
	dEngineDedup       = desc("offload_engine_deduplicated_total", "Duplicates dropped.")
	dDedupeKeys        = desc("offload_engine_dedupe_keys", "Event ids remembered in the dedupe key store.")
	dDedupeHeld        = desc("offload_engine_dedupe_held_seconds", "Event time the remembered ids span (at most engine.dedupe_window).")
	dDedupeFilterBytes = desc("offload_engine_dedupe_filter_bytes", "Memory of the dedupe key store's Bloom filters.")
	dDuckDBMemory      = desc("offload_engine_duckdb_memory_bytes", "Memory DuckDB's buffer manager holds in the engine's database.")
	dDedupeFilterHits  = desc("offload_engine_dedupe_filter_hits_total", "Event ids a dedupe filter may hold (since start).")
	dDedupeLookups     = desc("offload_engine_dedupe_disk_lookups_total", "Dedupe key store reads confirming a filter hit (since start).")
	dDedupeFalsePos    = desc("offload_engine_dedupe_false_positives_total", "Dedupe key store reads that found no remembered id (since start).")
	dEngineLate        = desc("offload_engine_late_events_total", "Events behind the watermark.", "kind")
	dEngineWindows     = desc("offload_engine_windows_emitted_total", "Window rows emitted.")
	dEngineBacklog     = desc("offload_engine_backlog_records", "WAL records waiting for the engine.")
	dWatermarkLag      = desc("offload_engine_watermark_lag_seconds", "Wall clock minus the watermark.")
	dDLQRows           = desc("offload_dlq_rows", "Rows in the dead-letter table.")
	dDLQBytes          = desc("offload_dlq_bytes", "Raw bytes of the dead-letter table's rows.")
	dOutboxRows        = desc("offload_outbox_rows", "Clean rows not shipped yet.")
	dOutboxBytes       = desc("offload_outbox_bytes", "Raw record bytes of the rows not shipped yet.")
	dOutboxBatches     = desc("offload_outbox_batches", "Sealed batches by state.", "state")
	dOldestUnshipped   = desc("offload_oldest_unshipped_seconds", "Age of the oldest unshipped data.")
	dBudget            = desc("offload_disk_budget_bytes", "disk_budget.")
	dUsed              = desc("offload_disk_used_bytes", "What the budget counts: WAL live bytes plus unshipped outbox bytes.")
	dRunway            = desc("offload_outage_runway_seconds", "Seconds until the budget is full at the current net growth rate; -1 when not growing.")
	dLoaderState       = desc("offload_loader_state", "1 for the loader's current state.", "state")
	dLoaderCircuit     = desc("offload_loader_circuit", "1 for the circuit's state.", "state")
	dLoaderLoads       = desc("offload_loader_loads_total", "Batches loaded.")
	dLoaderAlready     = desc("offload_loader_already_loaded_total", "Batches found in the warehouse ledger already.")
	dLoaderRows        = desc("offload_loader_rows_total", "Clean rows loaded.")
	dLoaderBytes       = desc("offload_loader_bytes_shipped_total", "Parquet bytes shipped.")
	dLoaderRetries     = desc("offload_loader_retries_total", "Retryable failures.")
	dLoaderParked      = desc("offload_loader_parked_total", "Batches parked after a permanent failure.")
	dLoaderUnanswered  = desc("offload_loader_unanswered_seconds", "How long the warehouse has not answered the load attempt in flight, once past the usual load time (docs/LOADER.md); 0 otherwise.")
	dLoaderWHDups      = desc("offload_loader_warehouse_duplicates_total", "Rows kept out of the warehouse because it held their event already (dedupe.warehouse: merge).")
	dOutboxQuarantined = desc("offload_outbox_quarantined_files", "Exported outbox files in quarantine (counted at start, plus those moved since): they failed their checksum before loading and are never loaded.")
	dBuildInfo         = desc("offload_build_info", "Always 1.", "version")
	dWatchdog          = desc("offload_watchdog_timestamp_seconds", "When the main loop last proved alive.")
)

var scrapeDescs = []*prometheus.Desc{
	dIngestRecords, dIngestBytes, dIngestDuplicates, dIngestFetchErrors, dTopicRecreations, dIngestCommitErrs, dIngestPaused, dIngestPauses, dIngestReady, dKafkaLag, dKafkaUncommitted, dWALBytes, dWALRecords, dWALQuarEntries, dWALQuarRecords, dEngineRecords, dEngineAccepted, dEngineRejected, dEngineFiltered, dEngineUnmapped, dEngineDedup, dDedupeKeys, dDedupeHeld, dDedupeFilterBytes, dDuckDBMemory, dDedupeFilterHits, dDedupeLookups, dDedupeFalsePos, dEngineLate, dEngineWindows, dEngineBacklog, dWatermarkLag, dDLQRows, dDLQBytes, dOutboxRows, dOutboxBytes, dOutboxBatches, dOldestUnshipped, dBudget, dUsed, dRunway, dLoaderState, dLoaderCircuit, dLoaderLoads, dLoaderAlready, dLoaderRows, dLoaderBytes, dLoaderRetries, dLoaderParked, dLoaderUnanswered, dLoaderWHDups, dBuildInfo, dWatchdog,
	dOutboxQuarantined,
}

var loaderStates = []string{loader.StateIdle, loader.StateLoading, loader.StateRetrying, loader.StateOpen,
	loader.StatePaused, loader.StateWindow, loader.StateStopped}

var circuitStates = []string{loader.CircuitClosed, loader.CircuitOpen, loader.CircuitHalfOpen}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := (*Metrics)(c)
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	s := m.snapshot()
	if in := s.Ingest; in != nil {
		counter(dIngestRecords, float64(in.Records))
		counter(dIngestBytes, float64(in.Bytes))
		counter(dIngestDuplicates, float64(in.Duplicates))
		counter(dIngestFetchErrors, float64(in.FetchErrors))
		counter(dTopicRecreations, float64(in.TopicRecreations))
		counter(dIngestCommitErrs, float64(in.CommitErrors))
		gauge(dIngestPaused, b2f(in.Paused))
		counter(dIngestPauses, float64(in.Pauses))
		gauge(dIngestReady, b2f(s.Ready))
		for _, p := range in.Partitions {
			if p.Lag >= 0 {
				gauge(dKafkaLag, float64(p.Lag), p.Topic, strconv.Itoa(int(p.Partition)))
			}
			gauge(dKafkaUncommitted, p.UncommittedAge.Seconds(), p.Topic, strconv.Itoa(int(p.Partition)))
		}
	}
	gauge(dWALBytes, float64(s.WALBytes))
	gauge(dWALRecords, float64(s.WALRecords))
	gauge(dWALQuarEntries, float64(m.src.WALQuarantine.Entries))
	gauge(dWALQuarRecords, float64(m.src.WALQuarantine.Records))
	e := s.Engine
	counter(dEngineRecords, float64(e.RecordsIn))
	counter(dEngineAccepted, float64(e.Accepted))
	for code, v := range e.RejectedByCode {
		counter(dEngineRejected, float64(v), code)
	}
	for rule, v := range e.FilteredByRule {
		counter(dEngineFiltered, float64(v), rule)
	}
	for field, v := range e.UnmappedByField {
		counter(dEngineUnmapped, float64(v), field)
	}
	counter(dEngineDedup, float64(e.Deduplicated))
	gauge(dDedupeKeys, float64(e.DedupeKeys))
	gauge(dDedupeHeld, e.DedupeHeld.Seconds())
	gauge(dDedupeFilterBytes, float64(e.DedupeFilterBytes))
	gauge(dDuckDBMemory, float64(e.DuckDBMemory))
	counter(dDedupeFilterHits, float64(e.DedupeFilterHits))
	counter(dDedupeLookups, float64(e.DedupeDiskLookups))
	counter(dDedupeFalsePos, float64(e.DedupeFalsePositives))
	counter(dEngineLate, float64(e.Late), "late")
	counter(dEngineLate, float64(e.TooLate), "too_late")
	counter(dEngineWindows, float64(e.WindowsEmitted))
	gauge(dEngineBacklog, float64(s.Backlog))
	if !e.Watermark.IsZero() {
		gauge(dWatermarkLag, s.At.Sub(e.Watermark).Seconds())
	}
	gauge(dDLQRows, float64(e.DLQRows))
	gauge(dDLQBytes, float64(e.DLQBytes))
	gauge(dOutboxRows, float64(e.OutboxRowsPending))
	gauge(dOutboxBytes, float64(e.OutboxBytesPending))
	gauge(dOutboxBatches, float64(s.Sealed), engine.BatchSealed)
	gauge(dOutboxBatches, float64(s.Parked), engine.BatchParked)
	gauge(dOldestUnshipped, s.OldestUnshipped.Seconds())
	gauge(dBudget, float64(s.Budget))
	gauge(dUsed, float64(s.Used))
	gauge(dRunway, s.Runway.Seconds())
	if l := s.Loader; l != nil {
		for _, st := range loaderStates {
			gauge(dLoaderState, b2f(l.State == st), st)
		}
		for _, st := range circuitStates {
			gauge(dLoaderCircuit, b2f(l.Circuit == st), st)
		}
		counter(dLoaderLoads, float64(l.Loaded))
		counter(dLoaderAlready, float64(l.AlreadyLoaded))
		counter(dLoaderRows, float64(l.Rows))
		counter(dLoaderBytes, float64(l.BytesShipped))
		counter(dLoaderRetries, float64(l.Retries))
		counter(dLoaderParked, float64(l.Parked))
		counter(dLoaderWHDups, float64(l.WarehouseDuplicates))
		gauge(dLoaderUnanswered, l.Unanswered.Seconds())
		gauge(dOutboxQuarantined, float64(l.Quarantined))
	}
	gauge(dBuildInfo, 1, m.version)
	gauge(dWatchdog, float64(m.watchdog.Load())/1e9)
}

// rater turns samples of a growing (or shrinking) value into a rate over a
// recent span.
type rater struct {
	mu      sync.Mutex
	span    time.Duration
	samples []sample
}

type sample struct {
	at time.Time
	v  float64
}

func newRater(span time.Duration) *rater { return &rater{span: span} }

// add records v at t and returns the rate per second since the oldest
// sample within the span (0 until there are two samples a second apart).
func (r *rater) add(t time.Time, v float64) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples = append(r.samples, sample{t, v})
	i := 0
	for i < len(r.samples)-1 && t.Sub(r.samples[i].at) > r.span {
		i++
	}
	r.samples = r.samples[i:]
	first := r.samples[0]
	if d := t.Sub(first.at); d >= time.Second {
		return (v - first.v) / d.Seconds()
	}
	return 0
}
