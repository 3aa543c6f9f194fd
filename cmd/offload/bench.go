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
	warehouse := fs.String("warehouse", "snowflake", "the in-process test warehouse the run (or --chaos) ships to: "+testwarehouse.Types+"; with --chaos also postgres (its server's DSN in "+testwarehouse.PostgresDSNEnv+")")
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
		*profile = rig.ProfileInProcess
	case *profile != profileDrain && *profile != rig.ProfileInProcess:
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
		x := rig.External{Appliance: *appliance, Topic: *topic, Tables: *tables, Token: os.Getenv("OFFLOAD_ADMIN_TOKEN"),
			WarehouseDSN: os.Getenv("OFFLOAD_BENCH_WAREHOUSE_DSN")}
		if *brokers == "" || x.Topic == "" || x.WarehouseDSN == "" {
			return usageError{errors.New("--appliance needs --brokers, --topic and the warehouse's gosnowflake DSN in OFFLOAD_BENCH_WAREHOUSE_DSN")}
		}
		x.Brokers = strings.Split(*brokers, ",")
		res, err := x.Run(*events, *rate, *schema, stderr)
		if err != nil {
			return err
		}
		return reportBench(stdout, res, *jsonOut)
	}
	if err := testwarehouse.Check(*warehouse, *chaos); err != nil {
		return usageError{err}
	}
	k := stack.Options{Partitions: *partitions, Warehouse: *warehouse}
	if *brokers != "" {
		k.Brokers, k.Topic = strings.Split(*brokers, ","), fmt.Sprintf("offload-bench-%d", time.Now().UnixNano())
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
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("cannot find the offload binary to run: %w", err)
		}
		o := harness.Options{Binary: self, Brokers: strings.Split(*brokers, ","), BrokerRestart: *brokerRestart, Kills: *kills,
			Partitions: *partitions, Rate: *rate, Dir: *dir, Seed: *seed, TmpfsSize: *tmpfsMiB << 20, Warehouse: *warehouse,
			Progress: stderr, DeadLetters: deadLetters}
		if *scenarios != "" {
			o.Scenarios = map[string]bool{}
			for _, name := range strings.Split(*scenarios, ",") {
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
		if err := writeJSON(*jsonOut, res); err != nil {
			return err
		}
		if !res.OK {
			return errFound
		}
		return nil
	}
	fmt.Fprintf(stderr, "offload bench: %d events, %d partitions, rate %s, data in %s\n", *events, *partitions, rateText(*rate), *dir)
	res, err := rig.InProcess(rig.InProcessOptions{Dir: *dir, Stack: k, Events: *events, Rate: *rate, Schema: *schema, Progress: stderr}, startRig)
	if err != nil {
		return err
	}
	return reportBench(stdout, res, *jsonOut)
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
