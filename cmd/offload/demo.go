package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/bench/gen"
	"github.com/offload/offload/internal/admin"
	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/internal/snowtest"
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

// runDemo runs everything embedded: an in-process Kafka, the load
// generator, the pipeline, the Snowflake-protocol test server as the
// warehouse, and the dashboard.
func runDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	duration := fs.Duration("duration", 0, "stop after this long (0: when the dashboard quits or on Ctrl-C)")
	noTUI := fs.Bool("no-tui", false, "no dashboard: run headless")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	rate := fs.Float64("rate", 500, "events per second from the load generator")
	dir := fs.String("dir", "", "data directory (default: a new directory under the system's temporary directory)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *noTUI && *duration == 0 {
		return usageError{errors.New("--no-tui needs --duration (e.g. --duration 30s)")}
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "offload-demo-")
		if err != nil {
			return err
		}
		*dir = d
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	d, err := startDemo(*dir, *rate)
	if err != nil {
		return err
	}
	defer d.close()
	if !*asJSON {
		fmt.Fprintf(stderr, "offload demo: data in %s, admin endpoint http://%s, log %s\n", *dir, d.adminAddr, d.logPath)
	}
	if *noTUI {
		<-ctx.Done()
	} else if err := tui.Run(ctx, tui.Config{Addr: "http://" + d.adminAddr, Token: d.token, Interval: time.Second,
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
	dir, logPath, adminAddr, token string
	kafka                          *kfake.Cluster
	client                         *kgo.Client
	warehouse                      *snowtest.Server
	gen                            *gen.Generator
	genStop                        context.CancelFunc
	genDone                        chan error
	daemonStop                     context.CancelFunc
	daemonDone                     chan error
	logFile                        *os.File
	mu                             sync.Mutex
	up                             bool
}

func startDemo(dir string, rate float64) (*demo, error) {
	d := &demo{dir: dir, logPath: filepath.Join(dir, "offload.log"), up: true}
	ok := false
	defer func() {
		if !ok {
			d.close()
		}
	}()
	var err error
	if d.logFile, err = os.Create(d.logPath); err != nil {
		return nil, err
	}
	if d.kafka, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "orders")); err != nil {
		return nil, fmt.Errorf("demo: in-process Kafka: %w", err)
	}
	d.warehouse, err = snowtest.New(snowtest.Options{Path: filepath.Join(dir, "warehouse.duckdb"), Dir: filepath.Join(dir, "warehouse-stage")})
	if err != nil {
		return nil, fmt.Errorf("demo: warehouse: %w", err)
	}
	password, token := randomHex(12), randomHex(16)
	d.token = token
	d.warehouse.AddUser(snowtest.User{Name: "OFFLOAD", Password: password})

	c := config.Default()
	c.ApplianceID, c.DataDir, c.DiskBudget = "demo", filepath.Join(dir, "data"), 1<<30
	c.ShutdownGrace = config.Duration(10 * time.Second)
	c.Kafka.Brokers, c.Kafka.Topics, c.Kafka.Group = d.kafka.ListenAddrs(), []string{"orders"}, "offload-demo"
	c.Kafka.SessionTimeout = config.Duration(6 * time.Second)
	c.Engine.Interval = config.Duration(250 * time.Millisecond)
	// Short windows and lateness so windows close, and late events
	// correct them, within a minute's demo.
	c.Engine.Window = config.Duration(10 * time.Second)
	c.Engine.Lateness = config.Duration(15 * time.Second)
	c.Outbox.SealAge = config.Duration(3 * time.Second)
	c.Warehouse = config.Warehouse{Type: "snowflake", Account: d.warehouse.Account(), User: "OFFLOAD", Database: "OFFLOAD_DB",
		Schema: "PUBLIC", Host: "127.0.0.1", Port: d.warehouse.Port(), Protocol: "http", Auth: "password",
		Password: config.Secret(password), Stage: "OFFLOAD_STAGE",
		Tables:       config.WarehouseTables{Transactions: "OFFLOAD_TRANSACTIONS", Windows: "OFFLOAD_WINDOWS", Ledger: "OFFLOAD_LOAD_LEDGER"},
		LoginTimeout: config.Duration(2 * time.Second), RequestTimeout: config.Duration(2 * time.Second)}
	c.Loader.RetryBase, c.Loader.RetryMax = config.Duration(200*time.Millisecond), config.Duration(3*time.Second)
	c.Loader.BreakerCooldown = config.Duration(3 * time.Second)
	c.Admin = config.Admin{Listen: "127.0.0.1:0", Token: config.Secret(token)}
	c.EnsureDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("demo: BUG: %w", err)
	}

	log, level := newLogger(c.Log, d.logFile)
	started := make(chan string, 1)
	dctx, dstop := context.WithCancel(context.Background())
	d.daemonStop, d.daemonDone = dstop, make(chan error, 1)
	hooks := &admin.DemoHooks{WarehouseUp: d.warehouseUp, SetWarehouse: d.setWarehouse}
	go func() {
		d.daemonDone <- daemon(dctx, &c, log, reloader{level: level}, daemonExtras{demo: hooks, started: func(a string) { started <- a }})
	}()
	select {
	case d.adminAddr = <-started:
	case err := <-d.daemonDone:
		return nil, fmt.Errorf("demo: the pipeline did not start: %v (log: %s)", err, d.logPath)
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("demo: the pipeline did not start within 60s (log: %s)", d.logPath)
	}

	if d.client, err = kgo.NewClient(kgo.SeedBrokers(d.kafka.ListenAddrs()...)); err != nil {
		return nil, err
	}
	d.gen = gen.New(gen.Options{Rate: rate, Seed: uint64(time.Now().UnixNano()), LateBy: 8 * time.Second})
	gctx, gstop := context.WithCancel(context.Background())
	d.genStop, d.genDone = gstop, make(chan error, 1)
	go func() {
		_, err := d.gen.Run(gctx, d.client)
		d.genDone <- err
	}()
	ok = true
	return d, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (d *demo) warehouseUp() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.up
}

func (d *demo) setWarehouse(up bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if up == d.up {
		return nil
	}
	if up {
		if err := d.warehouse.AcceptConnections(); err != nil {
			return err
		}
	} else {
		d.warehouse.RefuseConnections()
	}
	d.up = up
	return nil
}

// finish stops the generator, brings the warehouse back, waits (bounded)
// for every valid event to arrive, stops the pipeline and checks the
// warehouse against what was produced.
func (d *demo) finish() (demoSummary, error) {
	d.genStop()
	if err := <-d.genDone; err != nil {
		return demoSummary{}, err
	}
	if err := d.setWarehouse(true); err != nil {
		return demoSummary{}, err
	}
	g := d.gen.Summary()
	valid := d.gen.ValidIDs()
	db := d.warehouse.DB()
	count := func(q string) int64 {
		var n int64
		_ = db.QueryRow(q).Scan(&n)
		return n
	}
	deadline := time.Now().Add(90 * time.Second)
	for count(`SELECT count(DISTINCT EVENT_ID) FROM PUBLIC.OFFLOAD_TRANSACTIONS`) < int64(len(valid)) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	st := d.status()
	d.daemonStop()
	if err := <-d.daemonDone; err != nil {
		return demoSummary{}, fmt.Errorf("demo: the pipeline stopped on an error: %w (log: %s)", err, d.logPath)
	}
	sum := demoSummary{Produced: g.Produced, Valid: g.Valid, Duplicates: g.Duplicates, Malformed: g.Malformed,
		Loaded: count(`SELECT count(*) FROM PUBLIC.OFFLOAD_TRANSACTIONS`), Deduplicated: st.Engine.Deduplicated,
		DeadLettered: st.Engine.Rejected, Windows: count(`SELECT count(*) FROM PUBLIC.OFFLOAD_WINDOWS`),
		DataDir: d.dir, WarehouseFile: filepath.Join(d.dir, "warehouse.duckdb"), Log: d.logPath}
	rows, err := db.Query(`SELECT EVENT_ID, count(*) FROM PUBLIC.OFFLOAD_TRANSACTIONS GROUP BY ALL`)
	if err != nil {
		return sum, err
	}
	seen := 0
	for rows.Next() {
		var id string
		var n int64
		if err := rows.Scan(&id, &n); err != nil {
			rows.Close()
			return sum, err
		}
		if _, ok := valid[id]; ok {
			seen++
			sum.Extra += n - 1
		} else {
			sum.Extra += n
		}
	}
	rows.Close()
	sum.Missing = int64(len(valid) - seen)
	sum.ExactlyOnce = sum.Missing == 0 && sum.Extra == 0 && sum.Loaded == int64(len(valid))
	return sum, nil
}

// status reads the pipeline's status document (zero on failure: the
// summary then lacks the engine's counts).
func (d *demo) status() admin.Status {
	var st admin.Status
	res, err := http.Get("http://" + d.adminAddr + "/api/v1/status")
	if err != nil {
		return st
	}
	defer res.Body.Close()
	_ = json.NewDecoder(res.Body).Decode(&st)
	return st
}

func (d *demo) close() {
	if d.client != nil {
		d.client.Close()
	}
	if d.warehouse != nil {
		_ = d.warehouse.Close()
	}
	if d.kafka != nil {
		d.kafka.Close()
	}
	if d.logFile != nil {
		_ = d.logFile.Close()
	}
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
  warehouse (DuckDB)   %s
  log                  %s
`, s.Produced, s.Valid, s.Duplicates, s.Malformed, s.Loaded, s.Deduplicated, s.DeadLettered, s.Windows, verdict,
		s.DataDir, s.WarehouseFile, s.Log)
}
