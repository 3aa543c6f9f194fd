package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/bench/check"
	"github.com/offload/offload/bench/drain"
	"github.com/offload/offload/bench/gen"
	"github.com/offload/offload/engine/event"
	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/internal/ingest"
)

// errNotLoaded is produceUntilLoaded's answer when the run's events were
// not all loaded within benchTimeout.
var errNotLoaded = errors.New("bench: the run was not loaded in time")

// benchTimeout bounds how long a bench waits for its events to be loaded.
const benchTimeout = 30 * time.Minute

// produceUntilLoaded runs g into cl in the background and, every interval,
// asks loaded whether the run has reached the warehouse, telling it
// whether the generator has finished. It returns when loaded says yes,
// with the time the generator finished; errNotLoaded after benchTimeout.
func produceUntilLoaded(ctx context.Context, g *gen.Generator, cl *kgo.Client, interval time.Duration, loaded func(produced bool) bool) (time.Time, error) {
	genDone := make(chan error, 1)
	go func() {
		_, err := g.Run(ctx, cl)
		genDone <- err
	}()
	var produced time.Time
	tick := time.NewTicker(interval)
	defer tick.Stop()
	deadline := time.Now().Add(benchTimeout)
	for {
		select {
		case err := <-genDone:
			if err != nil {
				return produced, err
			}
			produced, genDone = time.Now(), nil
		case <-tick.C:
		}
		if loaded(!produced.IsZero()) {
			return produced, nil
		}
		if time.Now().After(deadline) {
			return produced, errNotLoaded
		}
	}
}

// benchResult is what `offload bench` reports (--json FILE).
type benchResult struct {
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

// Profiles of `offload bench` (docs/PERFORMANCE.md).
const (
	profileDrain     = "drain"     // the appliance as its own process drains a filled topic (bench/drain)
	profileInprocess = "inprocess" // everything in this process: the demo-like quick run
	profileExternal  = "external"  // an appliance that runs on its own (--appliance)
)

// runBench runs a profile of the benchmark: the drain (the default with
// --brokers) or the in-process run (without); or measures a running
// appliance (--appliance), or runs the fault harness (--chaos).
func runBench(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "gen" {
		return runBenchGen(args[1:], stdout, stderr)
	}
	fs := newFlags("bench", stderr)
	profile := fs.String("profile", "", "drain (the default with --brokers: a filled topic drained by `offload run` as its own process) or inprocess (the default without: everything in this process)")
	events := fs.Int("events", 1_000_000, "events to produce (with --profile drain: to fill the topic with)")
	partitions := fs.Int("partitions", 8, "partitions of the topic")
	rate := fs.Float64("rate", 0, "events per second; 0: the profile's default (drain: 10000 for its steady phase; inprocess: as fast as Kafka takes them)")
	steady := fs.Duration("steady", 20*time.Second, "with --profile drain: how long the steady phase after the drain produces at --rate")
	applianceProfile := fs.String("appliance-cpuprofile", "", "with --profile drain: write a CPU profile of the appliance, taken from its /debug/pprof while it drains, to this file")
	profileSeconds := fs.Int("profile-seconds", 15, "with --appliance-cpuprofile: seconds the profile covers")
	keep := fs.Bool("keep", false, "with --profile drain: keep the run's directory (configuration, log, data, warehouse; a failed run keeps it anyway)")
	schema := fs.String("schema", gen.SchemaCanonical, "source schema: canonical, shop (other field names, mapped) or csv")
	brokers := fs.String("brokers", "", "a Kafka to use (host:port,...; a new topic per run) instead of the in-process one")
	jsonOut := fs.String("json", "", "also write the result as JSON to this file")
	cpuProfile := fs.String("cpuprofile", "", "with --profile inprocess: write a CPU profile of the run to this file")
	appliance := fs.String("appliance", "", "measure a running appliance instead (its admin URL, e.g. http://127.0.0.1:7070); needs --brokers, --topic and the warehouse DSN")
	topic := fs.String("topic", "", "with --appliance: the topic it consumes")
	tables := fs.String("tables", "", "with --appliance: prefix qualifying the warehouse tables, e.g. ANALYTICS.OFFLOAD.")
	dir := fs.String("dir", "", "data directory (default: a new temporary directory, removed afterwards)")
	chaos := fs.Bool("chaos", false, "run the fault harness instead: the daemon as a subprocess against --brokers and the test warehouse, under kills and faults (docs/RELIABILITY.md)")
	kills := fs.Int("kills", 50, "with --chaos: SIGKILLs of the daemon, at least")
	brokerRestart := fs.String("broker-restart", "", "with --chaos: shell command that restarts the broker keeping its data, e.g. 'scripts/kafka-broker.sh restart'")
	seed := fs.Uint64("seed", 0, "with --chaos: random seed (0: from the clock); the report names it")
	warehouse := fs.String("warehouse", "snowflake", "the in-process test warehouse the run (or --chaos) ships to: "+testWarehouseTypes+"; with --chaos also postgres (its server's DSN in "+postgresDSNEnv+")")
	scenarios := fs.String("scenarios", "", "with --chaos: comma-separated scenarios to run (default: all)")
	tmpfsMiB := fs.Int64("tmpfs-mib", 1024, "with --chaos: size of the tmpfs mounted for the data directory (needs root; the disk-full scenario fills it); 0 skips that scenario")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := (&gen.Options{Schema: *schema}).Validate(); err != nil {
		return usageError{err}
	}
	switch {
	case *profile != "" && (*appliance != "" || *chaos):
		return usageError{errors.New("--profile does not go with --appliance or --chaos, which are modes of their own")}
	case *profile == "" && *brokers != "":
		*profile = profileDrain
	case *profile == "":
		*profile = profileInprocess
	case *profile != profileDrain && *profile != profileInprocess:
		return usageError{fmt.Errorf("--profile %q: want drain or inprocess", *profile)}
	}
	if *profile == profileDrain && *appliance == "" && !*chaos {
		if *brokers == "" {
			return usageError{errors.New("--profile drain needs --brokers: the real Kafka its topic is filled on (make bench starts one)")}
		}
		if *schema != gen.SchemaCanonical {
			return usageError{fmt.Errorf("--schema %s: --profile drain runs the canonical schema only (the appliance runs with the default mapping)", *schema)}
		}
		if *warehouse != "snowflake" {
			return usageError{fmt.Errorf("--warehouse %s: --profile drain ships to the Snowflake-protocol test server only (bench/drain); use --profile inprocess or --chaos for the other warehouses", *warehouse)}
		}
		bin := os.Getenv("OFFLOAD_BIN")
		if bin == "" {
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("cannot find the offload binary to run: %w (set OFFLOAD_BIN)", err)
			}
			bin = self
		}
		o := drain.Options{Brokers: strings.Split(*brokers, ","), Binary: bin, Events: *events,
			Partitions: *partitions, Rate: *rate, Steady: *steady, Dir: *dir, Keep: *keep,
			CPUProfile: *applianceProfile, ProfileSeconds: *profileSeconds, Progress: stderr}
		return runDrainBench(o, stdout, *jsonOut)
	}
	if *appliance != "" {
		x := externalBench{appliance: *appliance, topic: *topic, tables: *tables, token: os.Getenv("OFFLOAD_ADMIN_TOKEN"),
			warehouseDSN: os.Getenv("OFFLOAD_BENCH_WAREHOUSE_DSN")}
		if *brokers == "" || x.topic == "" || x.warehouseDSN == "" {
			return usageError{errors.New("--appliance needs --brokers, --topic and the warehouse's gosnowflake DSN in OFFLOAD_BENCH_WAREHOUSE_DSN")}
		}
		x.brokers = strings.Split(*brokers, ",")
		res, err := x.run(*events, *rate, *schema, stderr)
		if err != nil {
			return err
		}
		return reportBench(stdout, res, *jsonOut)
	}
	k := embeddedKafka{partitions: *partitions, warehouse: *warehouse}
	if *brokers != "" {
		k.brokers, k.topic = strings.Split(*brokers, ","), fmt.Sprintf("offload-bench-%d", time.Now().UnixNano())
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "offload-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	if *chaos {
		if *brokers == "" {
			return usageError{errors.New("--chaos needs --brokers: a real Kafka (the harness restarts it with --broker-restart)")}
		}
		if *kills < 1 {
			return usageError{errors.New("--kills must be at least 1")}
		}
		o := chaosOptions{brokers: strings.Split(*brokers, ","), brokerRestart: *brokerRestart, kills: *kills,
			partitions: *partitions, rate: *rate, dir: *dir, seed: *seed, tmpfsSize: *tmpfsMiB << 20, warehouse: *warehouse, progress: stderr}
		if *scenarios != "" {
			o.scenarios = map[string]bool{}
			for _, name := range strings.Split(*scenarios, ",") {
				o.scenarios[strings.TrimSpace(name)] = true
			}
		}
		if o.rate == 0 {
			o.rate = 1000
		}
		if o.seed == 0 {
			o.seed = uint64(time.Now().UnixNano())
		}
		fmt.Fprintf(stderr, "offload bench --chaos: %d kills, %d partitions, rate %s, seed %d, data in %s\n",
			o.kills, o.partitions, rateText(o.rate), o.seed, o.dir)
		res, err := runChaos(o)
		if err != nil {
			return err
		}
		printChaos(stdout, res)
		if err := writeJSON(*jsonOut, res); err != nil {
			return err
		}
		if !res.OK {
			return errFound
		}
		return nil
	}
	fmt.Fprintf(stderr, "offload bench: %d events, %d partitions, rate %s, data in %s\n", *events, *partitions, rateText(*rate), *dir)
	res, err := bench(*dir, k, *events, *rate, *schema, stderr)
	if err != nil {
		return err
	}
	return reportBench(stdout, res, *jsonOut)
}

// reportBench prints the table, writes the JSON file if asked, and fails
// the command when delivery was not exactly once.
func reportBench(stdout io.Writer, res benchResult, jsonOut string) error {
	printBench(stdout, res)
	if err := writeJSON(jsonOut, res); err != nil {
		return err
	}
	if !res.ExactlyOnce {
		return errFound
	}
	return nil
}

// writeJSON writes v, indented, to path unless path is empty.
func writeJSON(path string, v any) error {
	if path == "" {
		return nil
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func rateText(r float64) string {
	if r == 0 {
		return "unlimited"
	}
	return strconv.FormatFloat(r, 'f', 0, 64) + "/s"
}

func bench(dir string, k embeddedKafka, events int, rate float64, schema string, progress io.Writer) (benchResult, error) {
	res := benchResult{Profile: profileInprocess, Partitions: k.partitions, Schema: schema, Warehouse: k.warehouse}
	e, err := startEmbedded(dir, k, false, func(c *config.Config) {
		c.ApplianceID = "bench"
		c.Outbox.SealAge = config.Duration(2 * time.Second)
		c.Topics = map[string]event.Config{k.topicOr("orders"): {Mapping: gen.Mapping(schema)}}
	})
	if err != nil {
		return res, err
	}
	defer e.close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ProducerBatchMaxBytes(4<<20))
	if err != nil {
		return res, err
	}
	defer cl.Close()
	startOffsets, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), e.topic)
	if err != nil {
		return res, err
	}
	g := gen.New(gen.Options{Topic: e.topic, Count: events, Rate: rate, Schema: schema, Seed: uint64(time.Now().UnixNano()), Batch: 2000})

	start := time.Now()
	// Stages: when each reached the end of the run's data.
	var ingested, consumed time.Time
	produced, err := produceUntilLoaded(context.Background(), g, cl, 100*time.Millisecond, func(produced bool) bool {
		if !produced {
			return false
		}
		st := e.status()
		sum := g.Summary()
		if ingested.IsZero() && int64(st.Kafka.Records) >= sum.Produced {
			ingested = time.Now()
		}
		if consumed.IsZero() && st.Engine.RecordsIn >= sum.Produced {
			consumed = time.Now()
		}
		return st.Loader != nil && st.Loader.Rows >= sum.Valid && !consumed.IsZero() && !ingested.IsZero()
	})
	if errors.Is(err, errNotLoaded) {
		return res, fmt.Errorf("bench: not delivered within 30 minutes (log: %s)", e.logPath)
	}
	if err != nil {
		return res, err
	}
	loaded := time.Now()
	st := e.status()
	sum := g.Summary()
	fmt.Fprintf(progress, "offload bench: delivered in %s; measuring latencies and the bare consumer\n", loaded.Sub(start).Round(time.Millisecond))

	res.Events, res.ValidEvents = sum.Produced, sum.Valid
	res.Seconds = loaded.Sub(start).Seconds()
	res.EventsPerSec = float64(sum.Produced) / res.Seconds
	res.ProduceEventsPerSec = float64(sum.Produced) / produced.Sub(start).Seconds()
	res.IngestEventsPerSec = float64(sum.Produced) / ingested.Sub(start).Seconds()
	res.EngineEventsPerSec = float64(sum.Produced) / consumed.Sub(start).Seconds()
	res.LoaderRowsPerSec = float64(sum.Valid) / res.Seconds
	res.Deduplicated, res.DeadLettered = st.Engine.Deduplicated, st.Engine.Rejected
	res.RawBytes = sum.Bytes
	if st.Loader != nil {
		res.Loads, res.BytesShipped = st.Loader.Loaded, st.Loader.BytesShipped
		res.BytesShippedRatio = float64(res.BytesShipped) / float64(res.RawBytes)
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		res.CPUSeconds = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
		res.PeakRSSBytes = ru.Maxrss << 10
	}

	// Latencies from each row's lineage: Kafka timestamp → WAL durable
	// (ingest_time), and → the commit of its load (the ledger's loaded_at).
	if res.Latencies, err = e.warehouse.latencies(); err != nil {
		return res, err
	}

	if err := e.stop(); err != nil {
		return res, err
	}
	v, err := e.verify(g.ValidIDs())
	if err != nil {
		return res, err
	}
	res.ExactlyOnce, res.Missing, res.Extra = v.ExactlyOnce, v.Missing, v.Extra

	// The bare consumer: the same topic from the start, read and dropped.
	bare, err := bareConsumerFrom(e.brokers, e.topic, startOffsets, sum.Produced)
	if err != nil {
		return res, err
	}
	res.BareConsumerEventsPerSec = bare
	res.Ratio = res.EventsPerSec / bare
	return res, nil
}

func printBench(w io.Writer, r benchResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	row := func(name, value string) { fmt.Fprintf(tw, "%s\t%s\t\n", name, value) }
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
	row("profile", r.Profile)
	row("events (valid)", fmt.Sprintf("%d (%d)", r.Events, r.ValidEvents))
	row("end to end, events/s", f(r.EventsPerSec))
	row("produced, events/s", f(r.ProduceEventsPerSec))
	row("ingest → WAL, events/s", f(r.IngestEventsPerSec))
	row("engine, events/s", f(r.EngineEventsPerSec))
	row("loader, rows/s", f(r.LoaderRowsPerSec))
	row("bare consumer, events/s", f(r.BareConsumerEventsPerSec))
	row("ratio to the bare consumer", fmt.Sprintf("%.2f", r.Ratio))
	row("produce → durable p50/p99/p99.9 ms", fmt.Sprintf("%.0f / %.0f / %.0f", r.P50DurableMs, r.P99DurableMs, r.P999DurableMs))
	row("produce → warehouse p50/p99/p99.9 ms", fmt.Sprintf("%.0f / %.0f / %.0f", r.P50WarehouseMs, r.P99WarehouseMs, r.P999WarehouseMs))
	row("peak RSS (whole process)", fmt.Sprintf("%d MiB", r.PeakRSSBytes>>20))
	row("CPU", fmt.Sprintf("%.1f s", r.CPUSeconds))
	row("loads; shipped / raw bytes", fmt.Sprintf("%d; %.1f %%", r.Loads, 100*r.BytesShippedRatio))
	row("deduplicated; dead-lettered", fmt.Sprintf("%d; %d", r.Deduplicated, r.DeadLettered))
	row("exactly once", onceText(r.ExactlyOnce, r.Missing, r.Extra))
	_ = tw.Flush()
}

// onceText is the exactly-once check's line in a table.
func onceText(ok bool, missing, extra int64) string {
	if ok {
		return "yes"
	}
	return fmt.Sprintf("NO: %d missing, %d extra", missing, extra)
}

// runBenchGen runs the load generator alone against a Kafka.
func runBenchGen(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench gen", stderr)
	brokers := fs.String("brokers", "", "Kafka bootstrap brokers, host:port,... (required)")
	var o gen.Options
	fs.StringVar(&o.Topic, "topic", "orders", "topic to produce to")
	partitions := fs.Int("partitions", 8, "partitions when the topic is created")
	fs.Float64Var(&o.Rate, "rate", 1000, "events per second (0: unlimited)")
	fs.IntVar(&o.Count, "count", 0, "stop after this many events")
	fs.DurationVar(&o.Duration, "duration", 0, "stop after this long (neither: until Ctrl-C)")
	fs.StringVar(&o.Schema, "schema", gen.SchemaCanonical, "canonical, shop (other field names) or csv")
	fs.StringVar(&o.Key, "key", gen.KeyOrder, "record key: order (the order id) or none")
	fs.Float64Var(&o.DuplicateShare, "duplicates", 0.02, "share of events sent twice")
	fs.Float64Var(&o.LateShare, "late", 0.01, "share of events sent late")
	fs.DurationVar(&o.LateBy, "lateness", 2*time.Minute, "how late the late events are")
	fs.Float64Var(&o.MalformedShare, "malformed", 0.005, "share of malformed records")
	fs.IntVar(&o.Stores, "stores", 200, "stores (Zipf-skewed popularity)")
	var tls ingest.TLSOptions
	var sasl ingest.SASLOptions
	fs.BoolVar(&tls.Enabled, "tls", false, "connect with TLS")
	fs.StringVar(&tls.CAFile, "tls-ca-file", "", "CA certificates (PEM)")
	fs.StringVar(&tls.CertFile, "tls-cert-file", "", "client certificate (PEM)")
	fs.StringVar(&tls.KeyFile, "tls-key-file", "", "client key (PEM)")
	fs.StringVar(&sasl.Mechanism, "sasl-mechanism", "none", "none, plain, scram-sha-256 or scram-sha-512")
	fs.StringVar(&sasl.Username, "sasl-username", "", "SASL user")
	passwordFile := fs.String("sasl-password-file", "", "file holding the SASL password (or OFFLOAD_KAFKA_SASL_PASSWORD)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *brokers == "" {
		return usageError{errors.New("--brokers is required")}
	}
	if err := o.Validate(); err != nil {
		return usageError{err}
	}
	sasl.Password = os.Getenv("OFFLOAD_KAFKA_SASL_PASSWORD")
	if *passwordFile != "" {
		b, err := os.ReadFile(*passwordFile)
		if err != nil {
			return err
		}
		sasl.Password = strings.TrimRight(string(b), "\r\n")
	}
	secure, err := ingest.SecurityOpts(tls, sasl)
	if err != nil {
		return usageError{err}
	}
	seeds := strings.Split(*brokers, ",")
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...), kgo.ProducerBatchMaxBytes(4 << 20)}, secure...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := gen.CreateTopic(cl, o.Topic, *partitions); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	start := time.Now()
	sum, err := gen.New(o).Run(ctx, cl)
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	fmt.Fprintf(stdout, "produced %d records (%d valid events, %d duplicate copies, %d late, %d malformed), %.1f MB, in %.1f s: %.0f records/s\n",
		sum.Produced, sum.Valid, sum.Duplicates, sum.Late, sum.Malformed, float64(sum.Bytes)/1e6, secs, float64(sum.Produced)/secs)
	return nil
}
