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

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/bench/drain"
	"github.com/offload/offload/bench/gen"
	"github.com/offload/offload/bench/harness"
	"github.com/offload/offload/bench/rig"
	"github.com/offload/offload/bench/stack"
	"github.com/offload/offload/bench/testwarehouse"
	"github.com/offload/offload/internal/ingest"
)

// profileDrain is the main profile of `offload bench`
// (docs/PERFORMANCE.md): the appliance as its own process drains a
// filled topic (bench/drain). bench/rig runs the others.
const profileDrain = "drain"

// benchFlags are the flags of `offload bench`.
type benchFlags struct {
	profile, schema, brokers, jsonOut, dir, warehouse string
	events, partitions                                int
	rate                                              float64
	// --profile drain
	steady                   time.Duration
	applianceProfile         string
	profileSeconds           int
	keep                     bool
	cpuProfile               string // --profile inprocess
	appliance, topic, tables string // --appliance
	// --chaos
	chaos                    bool
	kills                    int
	brokerRestart, scenarios string
	seed                     uint64
	tmpfsMiB                 int64
}

// parseBenchFlags parses args into benchFlags and settles the profile.
func parseBenchFlags(args []string, stderr io.Writer) (*benchFlags, error) {
	var f benchFlags
	fs := newFlags("bench", stderr)
	fs.StringVar(&f.profile, "profile", "", "drain (the default with --brokers: a filled topic drained by `offload run` as its own process) or inprocess (the default without: everything in this process)")
	fs.IntVar(&f.events, "events", 1_000_000, "events to produce (with --profile drain: to fill the topic with)")
	fs.IntVar(&f.partitions, "partitions", 8, "partitions of the topic")
	fs.Float64Var(&f.rate, "rate", 0, "events per second; 0: the profile's default (drain: 10000 for its steady phase; inprocess: as fast as Kafka takes them)")
	fs.DurationVar(&f.steady, "steady", 20*time.Second, "with --profile drain: how long the steady phase after the drain produces at --rate")
	fs.StringVar(&f.applianceProfile, "appliance-cpuprofile", "", "with --profile drain: write a CPU profile of the appliance, taken from its /debug/pprof while it drains, to this file")
	fs.IntVar(&f.profileSeconds, "profile-seconds", 15, "with --appliance-cpuprofile: seconds the profile covers")
	fs.BoolVar(&f.keep, "keep", false, "with --profile drain: keep the run's directory (configuration, log, data, warehouse; a failed run keeps it anyway)")
	fs.StringVar(&f.schema, "schema", gen.SchemaCanonical, "source schema: canonical, shop (other field names, mapped) or csv")
	fs.StringVar(&f.brokers, "brokers", "", "a Kafka to use (host:port,...; a new topic per run) instead of the in-process one")
	fs.StringVar(&f.jsonOut, "json", "", "also write the result as JSON to this file")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "with --profile inprocess: write a CPU profile of the run to this file")
	fs.StringVar(&f.appliance, "appliance", "", "measure a running appliance instead (its admin URL, e.g. http://127.0.0.1:7070); needs --brokers, --topic and the warehouse DSN")
	fs.StringVar(&f.topic, "topic", "", "with --appliance: the topic it consumes")
	fs.StringVar(&f.tables, "tables", "", "with --appliance: prefix qualifying the warehouse tables, e.g. ANALYTICS.OFFLOAD.")
	fs.StringVar(&f.dir, "dir", "", "data directory (default: a new temporary directory, removed afterwards)")
	fs.BoolVar(&f.chaos, "chaos", false, "run the fault harness instead: the daemon as a subprocess against --brokers and the test warehouse, under kills and faults (docs/RELIABILITY.md)")
	fs.IntVar(&f.kills, "kills", 50, "with --chaos: SIGKILLs of the daemon, at least")
	fs.StringVar(&f.brokerRestart, "broker-restart", "", "with --chaos: shell command that restarts the broker keeping its data, e.g. 'scripts/kafka-broker.sh restart'")
	fs.Uint64Var(&f.seed, "seed", 0, "with --chaos: random seed (0: from the clock); the report names it")
	fs.StringVar(&f.warehouse, "warehouse", "snowflake", "the in-process test warehouse the run (or --chaos) ships to: "+testwarehouse.Types+"; with --chaos also postgres (its server's DSN in "+testwarehouse.PostgresDSNEnv+")")
	fs.StringVar(&f.scenarios, "scenarios", "", "with --chaos: comma-separated scenarios to run (default: all)")
	fs.Int64Var(&f.tmpfsMiB, "tmpfs-mib", 1024, "with --chaos: size of the tmpfs mounted for the data directory (needs root; the disk-full scenario fills it); 0 skips that scenario")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if err := (&gen.Options{Schema: f.schema}).Validate(); err != nil {
		return nil, usageError{err}
	}
	switch {
	case f.profile != "" && (f.appliance != "" || f.chaos):
		return nil, usageError{errors.New("--profile does not go with --appliance or --chaos, which are modes of their own")}
	case f.profile == "" && f.brokers != "":
		f.profile = profileDrain
	case f.profile == "":
		f.profile = rig.ProfileInProcess
	case f.profile != profileDrain && f.profile != rig.ProfileInProcess:
		return nil, usageError{fmt.Errorf("--profile %q: want drain or inprocess", f.profile)}
	}
	return &f, nil
}

// runBench runs a profile of the benchmark: the drain (the default with
// --brokers) or the in-process run (without); or measures a running
// appliance (--appliance), or runs the fault harness (--chaos).
func runBench(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "gen" {
		return runBenchGen(args[1:], stdout, stderr)
	}
	f, err := parseBenchFlags(args, stderr)
	if err != nil {
		return err
	}
	switch {
	case f.profile == profileDrain && f.appliance == "" && !f.chaos:
		return benchDrain(f, stdout, stderr)
	case f.appliance != "":
		return benchAppliance(f, stdout, stderr)
	}
	if err := testwarehouse.Check(f.warehouse, f.chaos); err != nil {
		return usageError{err}
	}
	if f.cpuProfile != "" {
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if f.dir == "" {
		d, err := os.MkdirTemp("", "offload-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		f.dir = d
	}
	if f.chaos {
		return benchChaos(f, stdout, stderr)
	}
	return benchInProcess(f, stdout, stderr)
}

// benchDrain runs the drain profile (bench/drain).
func benchDrain(f *benchFlags, stdout, stderr io.Writer) error {
	if f.brokers == "" {
		return usageError{errors.New("--profile drain needs --brokers: the real Kafka its topic is filled on (make bench starts one)")}
	}
	if f.schema != gen.SchemaCanonical {
		return usageError{fmt.Errorf("--schema %s: --profile drain runs the canonical schema only (the appliance runs with the default mapping)", f.schema)}
	}
	if f.warehouse != "snowflake" {
		return usageError{fmt.Errorf("--warehouse %s: --profile drain ships to the Snowflake-protocol test server only (bench/drain); use --profile inprocess or --chaos for the other warehouses", f.warehouse)}
	}
	bin := os.Getenv("OFFLOAD_BIN")
	if bin == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("cannot find the offload binary to run: %w (set OFFLOAD_BIN)", err)
		}
		bin = self
	}
	o := drain.Options{Brokers: strings.Split(f.brokers, ","), Binary: bin, Events: f.events,
		Partitions: f.partitions, Rate: f.rate, Steady: f.steady, Dir: f.dir, Keep: f.keep,
		CPUProfile: f.applianceProfile, ProfileSeconds: f.profileSeconds, Progress: stderr}
	return runDrainBench(o, stdout, f.jsonOut)
}

// benchAppliance measures a running appliance (rig.External).
func benchAppliance(f *benchFlags, stdout, stderr io.Writer) error {
	x := rig.External{Appliance: f.appliance, Topic: f.topic, Tables: f.tables, Token: os.Getenv("OFFLOAD_ADMIN_TOKEN"),
		WarehouseDSN: os.Getenv("OFFLOAD_BENCH_WAREHOUSE_DSN")}
	if f.brokers == "" || x.Topic == "" || x.WarehouseDSN == "" {
		return usageError{errors.New("--appliance needs --brokers, --topic and the warehouse's gosnowflake DSN in OFFLOAD_BENCH_WAREHOUSE_DSN")}
	}
	x.Brokers = strings.Split(f.brokers, ",")
	res, err := x.Run(f.events, f.rate, f.schema, stderr)
	if err != nil {
		return err
	}
	return reportBench(stdout, res, f.jsonOut)
}

// benchChaos runs the fault harness (bench/harness).
func benchChaos(f *benchFlags, stdout, stderr io.Writer) error {
	if f.brokers == "" {
		return usageError{errors.New("--chaos needs --brokers: a real Kafka (the harness restarts it with --broker-restart)")}
	}
	if f.kills < 1 {
		return usageError{errors.New("--kills must be at least 1")}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find the offload binary to run: %w", err)
	}
	o := harness.Options{Binary: self, Brokers: strings.Split(f.brokers, ","), BrokerRestart: f.brokerRestart, Kills: f.kills,
		Partitions: f.partitions, Rate: f.rate, Dir: f.dir, Seed: f.seed, TmpfsSize: f.tmpfsMiB << 20, Warehouse: f.warehouse,
		Progress: stderr, DeadLetters: deadLetters}
	if f.scenarios != "" {
		o.Scenarios = map[string]bool{}
		for _, name := range strings.Split(f.scenarios, ",") {
			o.Scenarios[strings.TrimSpace(name)] = true
		}
	}
	if o.Rate == 0 {
		o.Rate = 1000
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	fmt.Fprintf(stderr, "offload bench --chaos: %d kills, %d partitions, rate %s, seed %d, data in %s\n",
		o.Kills, o.Partitions, rateText(o.Rate), o.Seed, o.Dir)
	res, err := harness.Run(o)
	if err != nil {
		return err
	}
	harness.WriteReport(stdout, res)
	if err := writeJSON(f.jsonOut, res); err != nil {
		return err
	}
	if !res.OK {
		return errFound
	}
	return nil
}

// benchInProcess runs the in-process profile (bench/rig).
func benchInProcess(f *benchFlags, stdout, stderr io.Writer) error {
	k := stack.Options{Partitions: f.partitions, Warehouse: f.warehouse}
	if f.brokers != "" {
		k.Brokers, k.Topic = strings.Split(f.brokers, ","), fmt.Sprintf("offload-bench-%d", time.Now().UnixNano())
	}
	fmt.Fprintf(stderr, "offload bench: %d events, %d partitions, rate %s, data in %s\n", f.events, f.partitions, rateText(f.rate), f.dir)
	res, err := rig.InProcess(rig.InProcessOptions{Dir: f.dir, Stack: k, Events: f.events, Rate: f.rate, Schema: f.schema, Progress: stderr}, startRig)
	if err != nil {
		return err
	}
	return reportBench(stdout, res, f.jsonOut)
}

// reportBench prints the table, writes the JSON file if asked, and fails
// the command when delivery was not exactly once.
func reportBench(stdout io.Writer, res rig.Result, jsonOut string) error {
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

func printBench(w io.Writer, r rig.Result) {
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
