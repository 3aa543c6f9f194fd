package admin

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/offload/offload/engine"
	"github.com/offload/offload/internal/ingest"
	"github.com/offload/offload/loader"
)

// snapshot is one reading of the pipeline, shared by /metrics and
// /api/v1/status.
type snapshot struct {
	At              time.Time
	Ingest          *ingest.Stats
	Ready           bool
	WALBytes        int64
	WALRecords      int64
	Engine          engine.Stats
	Backlog         int64
	Sealed, Parked  int
	ParkedBatches   []engine.BatchInfo
	OldestUnshipped time.Duration
	Budget, Used    int64
	Runway          time.Duration // -1s when usage is not growing
	Loader          *loader.Status
	ListErr         error // listing the outbox's batches failed
}

func (m *Metrics) snapshot() snapshot {
	s := snapshot{At: m.now(), Budget: m.src.Budget}
	if in := m.src.Ingest; in != nil {
		st := in.Stats()
		s.Ingest, s.Ready = &st, in.Ready()
	}
	s.WALBytes = m.src.WAL.Bytes()
	for _, p := range m.src.WAL.Stats() {
		s.WALRecords += int64(p.Records)
	}
	s.Engine = m.src.Engine.Stats()
	for _, lag := range s.Engine.CursorLag {
		s.Backlog += lag
	}
	oldest := s.Engine.OpenSince
	batches, err := m.src.Engine.SealedBatches()
	s.ListErr = err
	for _, b := range batches {
		switch b.State {
		case engine.BatchSealed:
			s.Sealed++
		case engine.BatchParked:
			s.Parked++
			s.ParkedBatches = append(s.ParkedBatches, b)
		}
		if oldest.IsZero() || b.CreatedAt.Before(oldest) {
			oldest = b.CreatedAt
		}
	}
	if !oldest.IsZero() {
		s.OldestUnshipped = s.At.Sub(oldest)
	}
	s.Used = s.WALBytes + s.Engine.OutboxBytesPending
	s.Runway = -time.Second
	if rate := m.usage.add(s.At, float64(s.Used)); rate > 0 {
		s.Runway = time.Duration(float64(s.Budget-s.Used) / rate * float64(time.Second))
		s.Runway = max(s.Runway, 0)
	}
	if l := m.src.Loader; l != nil {
		st := l.Status()
		s.Loader = &st
	}
	return s
}

// Status is the body of GET /api/v1/status (docs/API.md).
type Status struct {
	ApplianceID   string        `json:"appliance_id"`
	Version       string        `json:"version"`
	UptimeSeconds float64       `json:"uptime_seconds"`
	State         string        `json:"state"`
	Rates         Rates         `json:"rates"`
	Kafka         KafkaStatus   `json:"kafka"`
	WAL           WALStatus     `json:"wal"`
	Engine        EngineStatus  `json:"engine"`
	Outbox        OutboxStatus  `json:"outbox"`
	DLQ           DLQStatus     `json:"dlq"`
	Disk          DiskStatus    `json:"disk"`
	Loader        *LoaderStatus `json:"loader"`
	Demo          *DemoStatus   `json:"demo,omitempty"`
}

// Rates are per-second rates over the last minute.
type Rates struct {
	IngestRecords float64 `json:"ingest_records_per_sec"`
	EngineRecords float64 `json:"engine_records_per_sec"`
	LoaderRows    float64 `json:"loader_rows_per_sec"`
}

// KafkaStatus describes the consumer.
type KafkaStatus struct {
	// Delivery is kafka.delivery: when offsets are committed.
	Delivery   string            `json:"delivery"`
	Ready      bool              `json:"ready"`
	Paused     bool              `json:"paused_for_budget"`
	Records    uint64            `json:"records"`
	Partitions []PartitionStatus `json:"partitions"`
	// RecreatedTopics lists the topics seen under a new topic ID since
	// the start, the last change of each (docs/API.md).
	RecreatedTopics []RecreatedTopic `json:"recreated_topics"`
}

// RecreatedTopic is a consumed topic deleted and created again under the
// same name.
type RecreatedTopic struct {
	Topic      string `json:"topic"`
	PreviousID string `json:"previous_topic_id"`
	ID         string `json:"topic_id"`
	// Incarnation is the WAL's incarnation of the new topic.
	Incarnation uint32    `json:"incarnation"`
	At          time.Time `json:"at"`
	// HighWaters are the old topic's last offsets in custody.
	HighWaters map[int32]int64 `json:"wal_high_waters"`
}

// PartitionStatus is one assigned partition.
type PartitionStatus struct {
	Topic         string `json:"topic"`
	Partition     int32  `json:"partition"`
	Committed     int64  `json:"committed"`
	HighWatermark int64  `json:"high_watermark"`
	Lag           int64  `json:"lag"`
	// Durable is the offset after the last one the WAL holds (fetched
	// and fsync'd), -1 if none.
	Durable int64 `json:"durable"`
	// UncommittedAgeSeconds is how long the oldest record durable in
	// the WAL has waited for its offset commit: in end-to-end delivery,
	// for the warehouse load holding it; 0 when all are committed.
	UncommittedAgeSeconds float64 `json:"uncommitted_age_seconds"`
}

// WALStatus describes the WAL's live data, and what `offload wal repair`
// moved to quarantine (counted at start).
type WALStatus struct {
	Bytes              int64  `json:"bytes"`
	Records            int64  `json:"records"`
	QuarantinedEntries int64  `json:"quarantined_entries"`
	QuarantinedRecords int64  `json:"quarantined_records"`
	QuarantineDir      string `json:"quarantine_dir,omitempty"`
}

// EngineStatus describes the engine.
type EngineStatus struct {
	BacklogRecords int64            `json:"backlog_records"`
	RecordsIn      int64            `json:"records_in"`
	Accepted       int64            `json:"accepted"`
	Rejected       int64            `json:"rejected"`
	RejectedByCode map[string]int64 `json:"rejected_by_code"`
	Filtered       int64            `json:"filtered"`
	// UnmappedFields are the source fields no mapping reads that the most
	// accepted rows carried, most first (at most MaxUnmappedFieldsShown).
	UnmappedFields []FieldCount `json:"unmapped_fields"`
	Deduplicated   int64        `json:"deduplicated"`
	Dedupe         DedupeStatus `json:"dedupe"`
	Late           int64        `json:"late"`
	TooLate        int64        `json:"too_late"`
	WindowsEmitted int64        `json:"windows_emitted"`
	Watermark      *time.Time   `json:"watermark"`
	MaxEventTime   *time.Time   `json:"max_event_time"`
}

// FieldCount is how many accepted rows carried an unmapped source field:
// its key or dotted path, or engine.UnmappedOther for the fields past the
// engine's bound.
type FieldCount struct {
	Name string `json:"name"`
	Rows int64  `json:"rows"`
}

// MaxUnmappedFieldsShown bounds EngineStatus.UnmappedFields; the metric
// offload_engine_unmapped_fields_total has every counted name.
const MaxUnmappedFieldsShown = 10

// topFields returns the MaxUnmappedFieldsShown largest counts of byName,
// most first, ties by name.
func topFields(byName map[string]int64) []FieldCount {
	out := make([]FieldCount, 0, len(byName))
	for name, n := range byName {
		out = append(out, FieldCount{name, n})
	}
	slices.SortFunc(out, func(a, b FieldCount) int { return cmp.Or(cmp.Compare(b.Rows, a.Rows), strings.Compare(a.Name, b.Name)) })
	return out[:min(len(out), MaxUnmappedFieldsShown)]
}

// DedupeStatus describes the engine's remembered event ids: how much event
// time they span against the configured window, and how the filters in
// front of the on-disk keys do.
type DedupeStatus struct {
	Keys           int64   `json:"keys"`
	HeldSeconds    float64 `json:"held_seconds"`
	WindowSeconds  float64 `json:"window_seconds"`
	FilterBytes    int64   `json:"filter_bytes"`
	FilterHits     int64   `json:"filter_hits"`
	DiskLookups    int64   `json:"disk_lookups"`
	FalsePositives int64   `json:"false_positives"`
}

// OutboxStatus describes what waits for the warehouse.
type OutboxStatus struct {
	Rows                   int64         `json:"rows"`
	Bytes                  int64         `json:"bytes"`
	SealedBatches          int           `json:"sealed_batches"`
	ParkedBatches          []ParkedBatch `json:"parked_batches"`
	OldestUnshippedSeconds float64       `json:"oldest_unshipped_seconds"`
}

// ParkedBatch is a batch the warehouse refused for good.
type ParkedBatch struct {
	ID       string    `json:"id"`
	Rows     int64     `json:"rows"`
	SealedAt time.Time `json:"sealed_at"`
	Error    string    `json:"error"`
}

// DLQStatus describes the dead-letter table.
type DLQStatus struct {
	Rows int64 `json:"rows"`
}

// DiskStatus describes the budget.
type DiskStatus struct {
	BudgetBytes int64   `json:"budget_bytes"`
	UsedBytes   int64   `json:"used_bytes"`
	UsedRatio   float64 `json:"used_ratio"`
	// RunwaySeconds is how long until the budget is full at the current
	// net growth rate; -1 when usage is not growing.
	RunwaySeconds float64 `json:"runway_seconds"`
}

// LoaderStatus describes the loader.
type LoaderStatus struct {
	State          string     `json:"state"`
	Circuit        string     `json:"circuit"`
	Batch          string     `json:"batch,omitempty"`
	LastError      string     `json:"last_error,omitempty"`
	LastErrorAt    *time.Time `json:"last_error_at,omitempty"`
	RetryAt        *time.Time `json:"retry_at,omitempty"`
	RetryInSeconds float64    `json:"retry_in_seconds"`
	Loaded         int64      `json:"loaded"`
	AlreadyLoaded  int64      `json:"already_loaded"`
	Rows           int64      `json:"rows"`
	BytesShipped   int64      `json:"bytes_shipped"`
	Retries        int64      `json:"retries"`
	Parked         int64      `json:"parked"`
	LastLoadAt     *time.Time `json:"last_load_at,omitempty"`
	// UnansweredSeconds is how long the warehouse has not answered the
	// attempt in flight, once past the usual load time; 0 otherwise.
	UnansweredSeconds float64 `json:"unanswered_seconds"`
	// Message says why the warehouse is unavailable, when it is.
	Message string `json:"message,omitempty"`
	// QuarantinedFiles counts the exported files in quarantine (they
	// failed their checksum): those there at start plus those moved since;
	// LastQuarantinedFile is the latest.
	QuarantinedFiles    int64  `json:"quarantined_files"`
	LastQuarantinedFile string `json:"last_quarantined_file,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// status builds the status document; rates keeps the rate samplers.
func (m *Metrics) status(applianceID string, started time.Time, rates *statusRates) Status {
	s := m.snapshot()
	e := s.Engine
	st := Status{
		ApplianceID: applianceID, Version: m.version, UptimeSeconds: s.At.Sub(started).Seconds(),
		WAL: WALStatus{Bytes: s.WALBytes, Records: s.WALRecords, QuarantinedEntries: m.src.WALQuarantine.Entries,
			QuarantinedRecords: m.src.WALQuarantine.Records, QuarantineDir: m.src.WALQuarantine.Dir},
		Engine: EngineStatus{BacklogRecords: s.Backlog, RecordsIn: e.RecordsIn, Accepted: e.Accepted, Rejected: e.Rejected,
			RejectedByCode: e.RejectedByCode, Filtered: e.Filtered, UnmappedFields: topFields(e.UnmappedByField),
			Deduplicated: e.Deduplicated, Late: e.Late, TooLate: e.TooLate,
			Dedupe: DedupeStatus{Keys: e.DedupeKeys, HeldSeconds: e.DedupeHeld.Seconds(), WindowSeconds: e.DedupeWindow.Seconds(),
				FilterBytes: e.DedupeFilterBytes, FilterHits: e.DedupeFilterHits, DiskLookups: e.DedupeDiskLookups,
				FalsePositives: e.DedupeFalsePositives},
			WindowsEmitted: e.WindowsEmitted, Watermark: timePtr(e.Watermark), MaxEventTime: timePtr(e.MaxEventTime)},
		Outbox: OutboxStatus{Rows: e.OutboxRowsPending, Bytes: e.OutboxBytesPending, SealedBatches: s.Sealed,
			ParkedBatches: []ParkedBatch{}, OldestUnshippedSeconds: s.OldestUnshipped.Seconds()},
		DLQ:  DLQStatus{Rows: e.DLQRows},
		Disk: DiskStatus{BudgetBytes: s.Budget, UsedBytes: s.Used, RunwaySeconds: s.Runway.Seconds()},
	}
	if s.Budget > 0 {
		st.Disk.UsedRatio = float64(s.Used) / float64(s.Budget)
	}
	for _, b := range s.ParkedBatches {
		st.Outbox.ParkedBatches = append(st.Outbox.ParkedBatches, ParkedBatch{ID: b.ID, Rows: b.Rows, SealedAt: b.FirstSealedAt, Error: b.Error})
	}
	st.Kafka.Partitions, st.Kafka.RecreatedTopics = []PartitionStatus{}, []RecreatedTopic{}
	st.Kafka.Delivery = m.src.Delivery
	var ingested, loaded float64
	if in := s.Ingest; in != nil {
		st.Kafka.Ready, st.Kafka.Paused, st.Kafka.Records = s.Ready, in.Paused, in.Records
		ingested = float64(in.Records)
		for _, p := range in.Partitions {
			st.Kafka.Partitions = append(st.Kafka.Partitions, PartitionStatus{Topic: p.Topic, Partition: p.Partition,
				Committed: p.Committed, HighWatermark: p.HighWatermark, Lag: p.Lag, Durable: p.Durable, UncommittedAgeSeconds: p.UncommittedAge.Seconds()})
		}
		for _, r := range in.Recreated {
			st.Kafka.RecreatedTopics = append(st.Kafka.RecreatedTopics, RecreatedTopic{Topic: r.Topic,
				PreviousID: r.PreviousID, ID: r.ID, Incarnation: r.Incarnation, At: r.At, HighWaters: r.HighWaters})
		}
	}
	if l := s.Loader; l != nil {
		ls := &LoaderStatus{State: l.State, Circuit: l.Circuit, Batch: l.Batch, LastError: l.LastError,
			LastErrorAt: timePtr(l.LastErrorAt), RetryAt: timePtr(l.RetryAt), Loaded: l.Loaded, AlreadyLoaded: l.AlreadyLoaded,
			Rows: l.Rows, BytesShipped: l.BytesShipped, Retries: l.Retries, Parked: l.Parked, LastLoadAt: timePtr(l.LastLoadAt),
			QuarantinedFiles: l.Quarantined, LastQuarantinedFile: l.LastQuarantined}
		ls.UnansweredSeconds, ls.Message = l.Unanswered.Seconds(), warehouseMessage(l, s.At)
		if !l.RetryAt.IsZero() && l.RetryAt.After(s.At) {
			ls.RetryInSeconds = l.RetryAt.Sub(s.At).Seconds()
		}
		st.Loader = ls
		loaded = float64(l.Rows)
	}
	st.Rates = Rates{
		IngestRecords: rates.ingest.add(s.At, ingested),
		EngineRecords: rates.engine.add(s.At, float64(e.RecordsIn)),
		LoaderRows:    rates.loader.add(s.At, loaded),
	}
	// The first that applies: a warehouse away comes before the budget
	// pause, which it causes.
	switch {
	case s.Ingest == nil:
		st.State = "starting"
	case !s.Ready && !s.Ingest.Paused:
		st.State = "not_ready"
	case st.Loader != nil && st.Loader.Message != "":
		st.State = "warehouse_unavailable"
	case s.Ingest.Paused:
		st.State = "paused_for_budget"
	case s.Parked > 0:
		st.State = "degraded"
	default:
		st.State = "ok"
	}
	return st
}

// warehouseMessage says why the warehouse is unavailable, or "" when it
// is not: an attempt it has not answered for longer than loads take, a
// retryable failure being waited out (or a circuit open), or an attempt
// at a warehouse that failed last time.
func warehouseMessage(l *loader.Status, now time.Time) string {
	switch {
	case l.Unanswered > 0:
		return "warehouse not answering for " + l.Unanswered.Round(time.Second).String()
	case l.State == loader.StateOpen:
		return "warehouse failing: circuit open after repeated failures (see last_error)"
	case l.State == loader.StateRetrying && l.WarehouseFailing:
		return "warehouse failing: retry in " + max(l.RetryAt.Sub(now), 0).Round(time.Second).String() + " (see last_error)"
	case l.State == loader.StateLoading && l.WarehouseFailing:
		return "warehouse failing: trying again (see last_error)"
	}
	return ""
}

// statusRates are the rate samplers of /api/v1/status.
type statusRates struct {
	ingest, engine, loader *rater
}

func newStatusRates() *statusRates {
	return &statusRates{ingest: newRater(time.Minute), engine: newRater(time.Minute), loader: newRater(time.Minute)}
}
