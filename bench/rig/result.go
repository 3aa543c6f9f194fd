// Package rig runs two of offload's benchmark profiles
// (docs/PERFORMANCE.md): the in-process one (`offload bench --profile
// inprocess`), where the generator, the appliance on a bench/stack and the
// checks share one process, and the external one (`offload bench
// --appliance`), which measures an appliance that runs on its own through
// its admin API and its warehouse. Both report records/s per stage,
// latencies from each row's lineage, resources, bytes shipped, a bare
// franz-go consumer's rate on the same topic, and the exactly-once check.
// The main profile, the drain, is bench/drain.
package rig

import "github.com/offload/offload/bench/check"

// Profiles this package runs.
const (
	ProfileInProcess = "inprocess" // everything in this process: the demo-like quick run
	ProfileExternal  = "external"  // an appliance that runs on its own
)

// Result is what a run reports (`offload bench --json FILE`).
type Result struct {
	Profile                  string  `json:"profile"`
	Events                   int64   `json:"events"`
	ValidEvents              int64   `json:"valid_events"`
	Partitions               int     `json:"partitions"`
	Schema                   string  `json:"schema"`
	Warehouse                string  `json:"warehouse"` // the test warehouse's type
	Seconds                  float64 `json:"seconds"`
	EventsPerSec             float64 `json:"events_per_sec"`
	ProduceEventsPerSec      float64 `json:"produce_events_per_sec"`
	IngestEventsPerSec       float64 `json:"ingest_events_per_sec"`
	EngineEventsPerSec       float64 `json:"engine_events_per_sec"`
	LoaderRowsPerSec         float64 `json:"loader_rows_per_sec"`
	BareConsumerEventsPerSec float64 `json:"bare_consumer_events_per_sec"`
	Ratio                    float64 `json:"ratio"`
	check.Latencies
	PeakRSSBytes      int64   `json:"peak_rss_bytes"`
	CPUSeconds        float64 `json:"cpu_seconds"`
	Loads             int64   `json:"loads"`
	RawBytes          int64   `json:"raw_bytes"`
	BytesShipped      int64   `json:"bytes_shipped"`
	BytesShippedRatio float64 `json:"bytes_shipped_ratio"`
	Deduplicated      int64   `json:"deduplicated"`
	DeadLettered      int64   `json:"dead_lettered"`
	ExactlyOnce       bool    `json:"exactly_once"`
	Missing           int64   `json:"missing"`
	Extra             int64   `json:"extra"`
}
