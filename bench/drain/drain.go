package drain

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/bench/check"
	"github.com/offload/offload/bench/gen"
	"github.com/offload/offload/internal/admin"
	"github.com/offload/offload/internal/snowtest"
)

// Options configures a run. Zero values take the defaults in brackets.
type Options struct {
	// Brokers is the Kafka the topic is filled on (required).
	Brokers []string
	// Binary is the offload binary run as the appliance (required).
	Binary string
	// Events is how many events fill the topic [1,000,000], over
	// Partitions partitions [8].
	Events     int
	Partitions int
	// Rate is the steady phase's events per second [10,000], for Steady
	// [20s].
	Rate   float64
	Steady time.Duration
	// Dir holds the run's files (a new temporary directory when empty);
	// it is removed at the end of a successful run unless Keep.
	Dir  string
	Keep bool
	// CPUProfile, when set, receives a CPU profile of the appliance taken
	// over ProfileSeconds [15] while it drains, from its /debug/pprof.
	CPUProfile     string
	ProfileSeconds int
	// Progress receives what the run is doing (io.Discard when nil).
	Progress io.Writer
}

// Validate reports a bad option by its flag's name.
func (o *Options) Validate() error {
	switch {
	case len(o.Brokers) == 0:
		return errors.New("drain: --brokers is required: the real Kafka the topic is filled on")
	case o.Binary == "":
		return errors.New("drain: the offload binary to run is unknown: set OFFLOAD_BIN")
	case o.Events < 0:
		return errors.New("drain: --events must not be negative")
	case o.Partitions < 0:
		return errors.New("drain: --partitions must not be negative")
	case o.Rate < 0:
		return errors.New("drain: --rate must not be negative")
	case o.Steady < 0:
		return errors.New("drain: --steady must not be negative")
	case o.ProfileSeconds < 0:
		return errors.New("drain: --profile-seconds must not be negative")
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.Events == 0 {
		o.Events = 1_000_000
	}
	if o.Partitions == 0 {
		o.Partitions = 8
	}
	if o.Rate == 0 {
		o.Rate = 10_000
	}
	if o.Steady == 0 {
		o.Steady = 20 * time.Second
	}
	if o.ProfileSeconds == 0 {
		o.ProfileSeconds = 15
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// Result is what a run measured (`--json FILE`; docs/PERFORMANCE.md says
// what each figure means).
type Result struct {
	Profile    string `json:"profile"`
	Topic      string `json:"topic"`
	Partitions int    `json:"partitions"`
	// The drain: the topic's records, and the unique valid events among them.
	Events      int64   `json:"events"`
	ValidEvents int64   `json:"valid_events"`
	RawBytes    int64   `json:"raw_bytes"`
	FillSeconds float64 `json:"fill_seconds"`
	// Events per second from the appliance's start until it had every
	// record in its WAL, consumed by its engine, and loaded.
	DrainKafkaEventsPerSec  float64 `json:"drain_kafka_events_per_sec"`
	DrainEngineEventsPerSec float64 `json:"drain_engine_events_per_sec"`
	DrainLoadedEventsPerSec float64 `json:"drain_loaded_events_per_sec"`
	DrainSeconds            float64 `json:"drain_seconds"`
	// The appliance process, from /proc: CPU until everything was loaded,
	// and its peak RSS at the end of the run.
	ApplianceCPUSeconds float64 `json:"appliance_cpu_seconds"`
	// The same CPU time as the appliance's /metrics tells it
	// (process_cpu_seconds_total), read right after /proc: a cross-check.
	ApplianceMetricsCPUSeconds float64 `json:"appliance_metrics_cpu_seconds"`
	ApplianceCPUUsPerEvent     float64 `json:"appliance_cpu_us_per_event"`
	AppliancePeakRSSBytes      int64   `json:"appliance_peak_rss_bytes"`
	// What the drain left: loads, bytes shipped, duplicates dropped,
	// records dead-lettered.
	Loads             int64   `json:"loads"`
	BytesShipped      int64   `json:"bytes_shipped"`
	BytesShippedRatio float64 `json:"bytes_shipped_ratio"`
	Deduplicated      int64   `json:"deduplicated"`
	DeadLettered      int64   `json:"dead_lettered"`
	// The ceiling: a plain franz-go group consumer reading the whole topic.
	BareConsumerEvents       int64   `json:"bare_consumer_events"`
	BareConsumerEventsPerSec float64 `json:"bare_consumer_events_per_sec"`
	Ratio                    float64 `json:"ratio"`
	// The steady phase, after the drain, into the same appliance.
	SteadyRate    float64 `json:"steady_rate"`
	SteadySeconds float64 `json:"steady_seconds"`
	SteadyEvents  int64   `json:"steady_events"`
	check.Latencies
	// Dedupe is the appliance's index of remembered ids once the steady
	// phase was loaded: its keys, the event time they span, its filters.
	Dedupe admin.DedupeStatus `json:"dedupe"`
	// Both phases' valid events in the warehouse, each exactly once.
	ExactlyOnce bool  `json:"exactly_once"`
	Missing     int64 `json:"missing"`
	Extra       int64 `json:"extra"`
	// CPUProfile is where the appliance's CPU profile went, if anywhere.
	CPUProfile string `json:"cpu_profile,omitempty"`
}

// pollInterval is how often the run reads the appliance's status.
const pollInterval = 100 * time.Millisecond

// drainTimeout bounds each wait for the appliance.
const drainTimeout = 30 * time.Minute

// Run fills the topic, drains it with the appliance, runs the steady
// phase, checks the warehouse and measures the bare consumer.
func Run(ctx context.Context, o Options) (res Result, err error) {
	if err := o.Validate(); err != nil {
		return res, err
	}
	o.setDefaults()
	res = Result{Profile: "drain", Partitions: o.Partitions, SteadyRate: o.Rate,
		Topic: "offload-drain-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "offload-drain-"); err != nil {
			return res, fmt.Errorf("cannot create the run's directory: %w", err)
		}
	} else if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return res, fmt.Errorf("cannot create the run's directory: %w", err)
	}
	defer func() {
		switch {
		case err != nil: // the appliance's log and data tell why
			fmt.Fprintf(o.Progress, "drain: the run failed; its files stay in %s\n", o.Dir)
		case !o.Keep:
			_ = os.RemoveAll(o.Dir)
		}
	}()

	// Fill the topic, untimed as far as the appliance is concerned.
	cl, err := kgo.NewClient(kgo.SeedBrokers(o.Brokers...), kgo.ProducerBatchMaxBytes(4<<20))
	if err != nil {
		return res, fmt.Errorf("cannot create a Kafka client for %v: %w", o.Brokers, err)
	}
	defer cl.Close()
	if err := gen.CreateTopic(cl, res.Topic, o.Partitions); err != nil {
		return res, err
	}
	seed := uint64(time.Now().UnixNano())
	fill := gen.New(gen.Options{Topic: res.Topic, Count: o.Events, Seed: seed, Batch: 2000, RunID: "d" + strconv.FormatUint(seed%(1<<32), 36)})
	fmt.Fprintf(o.Progress, "drain: filling %s with %d events over %d partitions\n", res.Topic, o.Events, o.Partitions)
	began := time.Now()
	sum, err := fill.Run(ctx, cl)
	if err != nil {
		return res, fmt.Errorf("cannot fill %s: %w", res.Topic, err)
	}
	res.FillSeconds = time.Since(began).Seconds()
	res.Events, res.ValidEvents, res.RawBytes = sum.Produced, sum.Valid, sum.Bytes

	// The warehouse, in this process.
	srv, err := snowtest.New(snowtest.Options{Path: filepath.Join(o.Dir, "warehouse.duckdb"), Dir: filepath.Join(o.Dir, "warehouse-stage")})
	if err != nil {
		return res, fmt.Errorf("cannot start the test warehouse: %w", err)
	}
	defer srv.Close()
	password := rand.Text()
	srv.AddUser(snowtest.User{Name: "OFFLOAD", Password: password})

	// The appliance, in its own process.
	addr, err := loopbackAddr()
	if err != nil {
		return res, err
	}
	cfg := filepath.Join(o.Dir, "offload.yaml")
	if err := (applianceConfig{dataDir: filepath.Join(o.Dir, "data"), topic: res.Topic, adminAddr: addr, brokers: o.Brokers,
		warehouse: srv.WarehouseYAML("OFFLOAD")}).write(cfg); err != nil {
		return res, err
	}
	fmt.Fprintf(o.Progress, "drain: filled in %.1f s; starting %s run --config %s\n", res.FillSeconds, o.Binary, cfg)
	a, err := startAppliance(o.Binary, cfg, filepath.Join(o.Dir, "offload.log"), []string{PasswordEnv + "=" + password})
	if err != nil {
		return res, err
	}
	defer a.kill() // on every early return; a no-op after stop
	w := watcher{a: a, addr: addr, client: admin.NewClient(addr, "")}

	var prof profiler
	if o.CPUProfile != "" {
		pctx, cancel := context.WithCancel(ctx)
		prof.start(pctx, w, o.CPUProfile, o.ProfileSeconds, o.Progress)
		// Joined after the drain on the normal path; on an early return,
		// cut short first.
		defer func() { cancel(); prof.wait() }()
	}
	if err := measureDrain(ctx, w, &res); err != nil {
		return res, err
	}
	fmt.Fprintf(o.Progress, "drain: loaded %d events in %.1f s; steady phase at %s/s for %s\n",
		res.Events, res.DrainSeconds, strconv.FormatFloat(o.Rate, 'f', 0, 64), o.Steady)
	if o.CPUProfile != "" && prof.wait() {
		res.CPUProfile = o.CPUProfile
	}

	steady, err := runSteady(ctx, w, cl, &res, o)
	if err != nil {
		return res, err
	}
	if res.Latencies, err = check.RunLatencies(srv.DB(), "PUBLIC.", "evt-"+steady.RunID()+"-%"); err != nil {
		return res, err
	}

	if res.AppliancePeakRSSBytes, err = a.peakRSS(); err != nil {
		return res, err
	}
	if err := a.stop(); err != nil {
		return res, err
	}
	if err := exactlyOnce(srv, fill, steady, &res); err != nil {
		return res, err
	}

	fmt.Fprintf(o.Progress, "drain: the appliance stopped; a bare franz-go consumer reads %s\n", res.Topic)
	if res.BareConsumerEvents, res.BareConsumerEventsPerSec, err = bareConsumer(ctx, o.Brokers, res.Topic); err != nil {
		return res, err
	}
	res.Ratio = res.DrainLoadedEventsPerSec / res.BareConsumerEventsPerSec
	return res, nil
}

// watcher reads the appliance's status and metrics, failing at once if
// the process has stopped.
type watcher struct {
	a      *appliance
	addr   string // the admin API, host:port
	client *admin.Client
}

// until polls the status until cond holds, for at most drainTimeout.
func (w watcher) until(ctx context.Context, what string, cond func(admin.Status) bool) (admin.Status, error) {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	deadline := time.Now().Add(drainTimeout)
	for {
		if w.a.exited() {
			return admin.Status{}, fmt.Errorf("the appliance stopped while waiting until %s: %v (log: %s)", what, w.a.waitErr, w.a.logPath)
		}
		st, err := w.client.Status(ctx)
		if err == nil && cond(st) {
			return st, nil
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("the appliance was not %s within %s (log: %s)", what, drainTimeout, w.a.logPath)
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-tick.C:
		}
	}
}

// measureDrain waits for the three stages to catch up with the filled
// topic, timing each from the appliance's start, and reads the process's
// CPU time once everything is loaded.
func measureDrain(ctx context.Context, w watcher, res *Result) error {
	var kafkaAt, engineAt time.Time
	st, err := w.until(ctx, "caught up", func(st admin.Status) bool {
		now := time.Now()
		if kafkaAt.IsZero() && int64(st.Kafka.Records) >= res.Events {
			kafkaAt = now
		}
		if engineAt.IsZero() && st.Engine.BacklogRecords == 0 && st.Engine.RecordsIn >= res.Events {
			engineAt = now
		}
		return !kafkaAt.IsZero() && !engineAt.IsZero() && loaded(st, res.ValidEvents)
	})
	if err != nil {
		return err
	}
	loadedAt := time.Now()
	ticks, err := w.a.cpuTicks()
	if err != nil {
		return err
	}
	m, err := w.client.Metrics(ctx, "process_cpu_seconds_total")
	if err != nil {
		return fmt.Errorf("cannot read the appliance's /metrics: %w", err)
	}
	res.ApplianceMetricsCPUSeconds = m["process_cpu_seconds_total"]
	rate := func(t time.Time) float64 { return float64(res.Events) / t.Sub(w.a.started).Seconds() }
	res.DrainKafkaEventsPerSec, res.DrainEngineEventsPerSec, res.DrainLoadedEventsPerSec = rate(kafkaAt), rate(engineAt), rate(loadedAt)
	res.DrainSeconds = loadedAt.Sub(w.a.started).Seconds()
	res.ApplianceCPUSeconds = float64(ticks) / clockTicks
	res.ApplianceCPUUsPerEvent = res.ApplianceCPUSeconds * 1e6 / float64(res.Events)
	res.Loads, res.BytesShipped = st.Loader.Loaded, st.Loader.BytesShipped
	res.BytesShippedRatio = float64(res.BytesShipped) / float64(res.RawBytes)
	res.Deduplicated, res.DeadLettered = st.Engine.Deduplicated, st.Engine.Rejected
	return nil
}

// loaded tells whether the warehouse has rows valid events and nothing
// waits in the outbox.
func loaded(st admin.Status, rows int64) bool {
	return st.Loader != nil && st.Loader.Rows >= rows && st.Outbox.Rows == 0 && st.Outbox.SealedBatches == 0
}

// runSteady produces at o.Rate for o.Steady into the running appliance
// and waits until that is loaded too.
func runSteady(ctx context.Context, w watcher, cl *kgo.Client, res *Result, o Options) (*gen.Generator, error) {
	seed := uint64(time.Now().UnixNano())
	g := gen.New(gen.Options{Topic: res.Topic, Rate: o.Rate, Count: max(1, int(o.Rate*o.Steady.Seconds())), Seed: seed,
		RunID: "s" + strconv.FormatUint(seed%(1<<32), 36)})
	began := time.Now()
	sum, err := g.Run(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("cannot produce the steady phase to %s: %w", res.Topic, err)
	}
	res.SteadySeconds, res.SteadyEvents = time.Since(began).Seconds(), sum.Produced
	st, err := w.until(ctx, "loaded after the steady phase", func(st admin.Status) bool {
		return loaded(st, res.ValidEvents+sum.Valid)
	})
	if err != nil {
		return nil, err
	}
	res.Dedupe = st.Engine.Dedupe
	return g, nil
}

// exactlyOnce checks that the warehouse holds each valid event of both
// phases once, and nothing else.
func exactlyOnce(srv *snowtest.Server, fill, steady *gen.Generator, res *Result) error {
	valid := fill.ValidIDs()
	for id := range steady.ValidIDs() {
		valid[id] = struct{}{}
	}
	rows, err := srv.DB().Query(`SELECT EVENT_ID, count(*) FROM PUBLIC.OFFLOAD_TRANSACTIONS GROUP BY ALL`)
	if err != nil {
		return fmt.Errorf("cannot read the warehouse: %w", err)
	}
	missing, duplicated, unexpected, err := check.TallyOnce(rows, valid)
	if err != nil {
		return fmt.Errorf("cannot read the warehouse: %w", err)
	}
	res.Missing, res.Extra = missing, duplicated+unexpected
	res.ExactlyOnce = res.Missing == 0 && res.Extra == 0
	return nil
}
