package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/bench/gen"
	"github.com/offload/offload/bench/stack"
	"github.com/offload/offload/bench/testwarehouse"
	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/tui"
)

// demoSummary is what `offload demo` prints at the end (--json: as JSON).
type demoSummary struct {
	Produced      int64  `json:"produced"`
	Valid         int64  `json:"valid"`
	Duplicates    int64  `json:"duplicates_sent"`
	Malformed     int64  `json:"malformed_sent"`
	Loaded        int64  `json:"loaded"`
	Deduplicated  int64  `json:"deduplicated"`
	DeadLettered  int64  `json:"dead_lettered"`
	Windows       int64  `json:"windows"`
	ExactlyOnce   bool   `json:"exactly_once"`
	Missing       int64  `json:"missing"`
	Extra         int64  `json:"extra"`
	DataDir       string `json:"data_dir"`
	WarehouseFile string `json:"warehouse_file"`
	Log           string `json:"log"`
}

// The demo's default rates. The BigQuery emulator's MERGE compares every
// staged window with every stored one (docs/LOADER.md, "BigQuery emulator
// gaps"), and the number of windows grows with the rate: at 500 events/s
// one commit of a 30-second demo took 85 s there.
const (
	demoRate         = 500.0
	demoRateBigQuery = 100.0
)

// runDemo runs everything embedded: an in-process Kafka, the load
// generator, the pipeline, a test server as the warehouse (--warehouse:
// the Snowflake-protocol or the Redshift-dialect one), and the dashboard.
func runDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	duration := fs.Duration("duration", 0, "stop after this long (0: when the dashboard quits or on Ctrl-C)")
	noTUI := fs.Bool("no-tui", false, "no dashboard: run headless")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	rate := fs.Float64("rate", 0, fmt.Sprintf("events per second from the load generator (default %g; %g with --warehouse bigquery)",
		demoRate, demoRateBigQuery))
	dir := fs.String("dir", "", "data directory (default: a new directory under the system's temporary directory)")
	warehouse := fs.String("warehouse", "snowflake", "the in-process test warehouse: "+testwarehouse.Types)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *rate < 0 {
		return usageError{fmt.Errorf("--rate %g is negative", *rate)}
	}
	if *rate == 0 {
		*rate = demoRate
		if *warehouse == "bigquery" {
			*rate = demoRateBigQuery
		}
	}
	if *noTUI && *duration == 0 {
		return usageError{errors.New("--no-tui needs --duration (e.g. --duration 30s)")}
	}
	if !*noTUI && !terminal(os.Stdin, stdout) {
		return usageError{errors.New("the dashboard needs a terminal; without one, run headless: --no-tui --duration 30s")}
	}
	if err := testwarehouse.Check(*warehouse, false); err != nil {
		return usageError{err}
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "offload-demo-")
		if err != nil {
			return err
		}
		*dir = d
	} else if _, err := os.Stat(*dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(*dir, 0o750); err != nil {
			return fmt.Errorf("cannot create --dir %s: %w", *dir, err)
		}
		fmt.Fprintf(stderr, "offload demo: created the data directory %s\n", *dir)
	} else if err != nil {
		return fmt.Errorf("cannot use --dir %s: %w", *dir, err)
	}
	// SIGHUP too: a closed terminal must end the demo, not leave it
	// producing with its dashboard drawing to nowhere.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	d, err := startDemo(*dir, *rate, *warehouse)
	if err != nil {
		return err
	}
	defer d.close()
	if !*asJSON {
		fmt.Fprintf(stderr, "offload demo: data in %s, admin endpoint http://%s, log %s\n", *dir, d.adminAddr, d.LogPath)
	}
	if *noTUI {
		<-ctx.Done()
	} else if err := tui.Run(ctx, tui.Config{Addr: "http://" + d.adminAddr, Token: d.Token, Interval: time.Second,
		In: os.Stdin, Out: stdout, Getenv: os.Getenv}); err != nil {
		fmt.Fprintf(stderr, "offload demo: dashboard: %v\n", err)
	}
	sum, err := d.finish()
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(sum)
	}
	printDemoSummary(stdout, sum)
	if !sum.ExactlyOnce {
		return errFound
	}
	return nil
}

type demo struct {
	*embedded
	client  *kgo.Client
	gen     *gen.Generator
	genStop context.CancelFunc
	genDone chan error
}

func startDemo(dir string, rate float64, warehouse string) (*demo, error) {
	e, err := startEmbedded(dir, stack.Options{Partitions: 3, Warehouse: warehouse}, true, func(c *config.Config) {
		c.ApplianceID = "demo"
		// Short windows and lateness so windows close, and late events
		// correct them, within a minute's demo.
		c.Engine.Window = config.Duration(10 * time.Second)
		c.Engine.Lateness = config.Duration(15 * time.Second)
		c.Outbox.SealAge = config.Duration(3 * time.Second)
	})
	if err != nil {
		return nil, err
	}
	d := &demo{embedded: e}
	if d.client, err = kgo.NewClient(kgo.SeedBrokers(e.Brokers...)); err != nil {
		d.close()
		return nil, err
	}
	d.gen = gen.New(gen.Options{Rate: rate, Seed: uint64(time.Now().UnixNano()), LateBy: 8 * time.Second})
	gctx, gstop := context.WithCancel(context.Background())
	d.genStop, d.genDone = gstop, make(chan error, 1)
	go func() {
		_, err := d.gen.Run(gctx, d.client)
		d.genDone <- err
	}()
	return d, nil
}

// finish stops the generator, brings the warehouse back, waits while the
// pipeline drains what was produced, stops it and checks the warehouse
// against what was produced.
func (d *demo) finish() (demoSummary, error) {
	d.genStop()
	if err := <-d.genDone; err != nil {
		return demoSummary{}, err
	}
	if err := d.SetWarehouse(true); err != nil {
		return demoSummary{}, err
	}
	g := d.gen.Summary()
	valid := d.gen.ValidIDs()
	stack.WaitDrained(d.Status, g.Produced)
	st := d.Status()
	if err := d.Stop(); err != nil {
		return demoSummary{}, err
	}
	v, err := d.Verify(valid)
	if err != nil {
		return demoSummary{}, err
	}
	return demoSummary{Produced: g.Produced, Valid: g.Valid, Duplicates: g.Duplicates, Malformed: g.Malformed,
		Loaded: v.Loaded, Deduplicated: st.Engine.Deduplicated, DeadLettered: st.Engine.Rejected, Windows: v.Windows,
		ExactlyOnce: v.ExactlyOnce, Missing: v.Missing, Extra: v.Extra,
		DataDir: d.Dir, WarehouseFile: d.Warehouse.File(), Log: d.LogPath}, nil
}

func (d *demo) close() {
	if d.client != nil {
		d.client.Close()
	}
	d.embedded.Close()
}

func printDemoSummary(w io.Writer, s demoSummary) {
	verdict := "yes: every valid event is in the warehouse exactly once"
	if !s.ExactlyOnce {
		verdict = fmt.Sprintf("NO: %d missing, %d extra", s.Missing, s.Extra)
	}
	fmt.Fprintf(w, `offload demo summary
  events produced      %d (%d valid, %d duplicate copies, %d malformed)
  loaded               %d rows into the warehouse
  deduplicated         %d
  dead-lettered        %d
  windows              %d
  exactly once         %s
  data directory       %s
  warehouse file       %s
  log                  %s
`, s.Produced, s.Valid, s.Duplicates, s.Malformed, s.Loaded, s.Deduplicated, s.DeadLettered, s.Windows, verdict,
		s.DataDir, s.WarehouseFile, s.Log)
}
