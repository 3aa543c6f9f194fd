package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/bench/gen"
	"github.com/offload/offload/internal/admin"
	"github.com/offload/offload/internal/appliance"
	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/tui"
)

// embedded is the appliance (internal/appliance) run in-process with what it talks to: a Kafka
// (in-process unless brokers are given) and a test server as its
// warehouse (testWarehouse). `offload demo` and `offload bench` run on it.
type embedded struct {
	dir, logPath, adminAddr, token string
	topic                          string
	brokers                        []string
	kafka                          *kfake.Cluster // nil with external brokers
	warehouse                      testWarehouse
	daemonStop                     context.CancelFunc
	daemonDone                     chan error
	logFile                        *os.File

	mu sync.Mutex
	up bool // the warehouse accepts connections
}

// embeddedKafka says which Kafka the embedded appliance consumes: an
// in-process one when brokers is empty, else topic (created when
// missing) on those brokers; and its warehouse type (testWarehouse,
// snowflake when empty).
type embeddedKafka struct {
	brokers    []string
	topic      string
	partitions int
	warehouse  string
}

// startEmbedded starts Kafka (unless external), the warehouse and the
// daemon, logging to dir/offload.log; tune adjusts the configuration;
// demo adds the dashboard's warehouse switch.
func startEmbedded(dir string, k embeddedKafka, demo bool, tune func(*config.Config)) (*embedded, error) {
	e := &embedded{dir: dir, logPath: filepath.Join(dir, "offload.log"), up: true, topic: k.topic, brokers: k.brokers}
	if e.topic == "" {
		e.topic = "orders"
	}
	ok := false
	defer func() {
		if !ok {
			e.close()
		}
	}()
	var err error
	if e.logFile, err = os.Create(e.logPath); err != nil {
		return nil, err
	}
	if len(e.brokers) == 0 {
		if e.kafka, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(k.partitions), e.topic)); err != nil {
			return nil, fmt.Errorf("in-process Kafka: %w", err)
		}
		e.brokers = e.kafka.ListenAddrs()
	} else if err := createTopic(e.brokers, e.topic, k.partitions); err != nil {
		return nil, err
	}
	typ := k.warehouse
	if typ == "" {
		typ = "snowflake"
	}
	if e.warehouse, err = newTestWarehouse(typ, dir, false); err != nil {
		return nil, err
	}
	e.token = randomHex(16)

	c := config.Default()
	c.ApplianceID, c.DataDir, c.DiskBudget = "embedded", filepath.Join(dir, "data"), 4<<30
	c.ShutdownGrace = config.Duration(10 * time.Second)
	c.Kafka.Brokers, c.Kafka.Topics, c.Kafka.Group = e.brokers, []string{e.topic}, "offload-embedded-"+e.topic
	c.Kafka.SessionTimeout = config.Duration(6 * time.Second)
	c.Engine.Interval = config.Duration(250 * time.Millisecond)
	e.warehouse.configure(&c.Warehouse)
	c.Loader.RetryBase, c.Loader.RetryMax = config.Duration(200*time.Millisecond), config.Duration(3*time.Second)
	c.Loader.BreakerCooldown = config.Duration(3 * time.Second)
	c.Admin = config.Admin{Listen: "127.0.0.1:0", Token: config.Secret(e.token)}
	tune(&c)
	c.EnsureDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("BUG: the embedded configuration: %w", err)
	}

	log, level := newLogger(c.Log, e.logFile)
	fs, err := walFS(log)
	if err != nil {
		return nil, err
	}
	started := make(chan string, 1)
	opts := appliance.Options{Version: versionString(), LogLevel: level, WALFS: fs, Started: func(a string) { started <- a }}
	if demo {
		opts.Demo = &admin.DemoHooks{WarehouseUp: e.warehouseUp, SetWarehouse: e.setWarehouse}
	}
	a, err := appliance.Open(context.Background(), &c, log, opts)
	if err != nil {
		return nil, fmt.Errorf("the pipeline did not start: %v (log: %s)", err, e.logPath)
	}
	dctx, dstop := context.WithCancel(context.Background())
	e.daemonStop, e.daemonDone = dstop, make(chan error, 1)
	go func() { e.daemonDone <- errors.Join(a.Run(dctx), a.Close()) }()
	select {
	case e.adminAddr = <-started:
	case err := <-e.daemonDone:
		return nil, fmt.Errorf("the pipeline did not start: %v (log: %s)", err, e.logPath)
	case <-time.After(60 * time.Second):
		_ = e.stop() // joins the appliance's goroutine
		return nil, fmt.Errorf("the pipeline did not start within 60s (log: %s)", e.logPath)
	}
	ok = true
	return e, nil
}

func (k embeddedKafka) topicOr(def string) string {
	if k.topic == "" {
		return def
	}
	return k.topic
}

// createTopic creates topic with partitions partitions on brokers unless
// it exists.
func createTopic(brokers []string, topic string, partitions int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	return gen.CreateTopic(cl, topic, partitions)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (e *embedded) warehouseUp() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.up
}

func (e *embedded) setWarehouse(up bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if up == e.up {
		return nil
	}
	if up {
		if err := e.warehouse.AcceptConnections(); err != nil {
			return err
		}
	} else {
		e.warehouse.RefuseConnections()
	}
	e.up = up
	return nil
}

// status reads the pipeline's status document (zero on failure).
func (e *embedded) status() admin.Status {
	st, _ := tui.NewHTTPClient(e.adminAddr, "").Status(context.Background())
	return st
}

// drainStall is how long waitDrained waits without progress: longer than
// the slowest test warehouse's request timeout (bigQueryRequestTimeout),
// so a slow commit that ends in a load still counts as progress.
const drainStall = 3 * time.Minute

// waitDrained waits until the pipeline has taken in produced records and
// loaded all it accepted (the outbox empty, nothing sealed), as long as
// it makes progress: it stops after drainStall without a record taken in
// or a batch loaded, or when a batch is parked. It asks the pipeline's
// status, never the warehouse: on the BigQuery emulator every query job
// makes the next ones, the loader's commits among them, slower
// (docs/LOADER.md, "BigQuery emulator gaps"). It reports whether the
// pipeline drained.
func (e *embedded) waitDrained(produced int64) bool {
	var last [2]int64
	stalled := time.Now().Add(drainStall)
	for time.Now().Before(stalled) {
		st := e.status()
		if drained(st, produced) {
			return true
		}
		if len(st.Outbox.ParkedBatches) > 0 {
			return false
		}
		if now := drainProgress(st); now != last {
			last, stalled = now, time.Now().Add(drainStall)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}

// drained reports whether st shows produced records taken in and every
// accepted one loaded.
func drained(st admin.Status, produced int64) bool {
	return st.Kafka.Records >= uint64(produced) && st.Engine.BacklogRecords == 0 &&
		st.Outbox.Rows == 0 && st.Outbox.SealedBatches == 0
}

// drainProgress is what grows while the pipeline drains: records taken
// in by the engine and batches done by the loader.
func drainProgress(st admin.Status) [2]int64 {
	p := [2]int64{st.Engine.RecordsIn}
	if st.Loader != nil {
		p[1] = st.Loader.Loaded + st.Loader.AlreadyLoaded
	}
	return p
}

// stop stops the pipeline (a SIGTERM's drain).
func (e *embedded) stop() error {
	e.daemonStop()
	if err := <-e.daemonDone; err != nil {
		return fmt.Errorf("the pipeline stopped on an error: %w (log: %s)", err, e.logPath)
	}
	return nil
}

// verified is the warehouse checked against the valid events produced.
type verified struct {
	Loaded, Windows, Missing, Extra int64
	ExactlyOnce                     bool
}

// verify checks that the warehouse holds each valid event exactly once and
// nothing else.
func (e *embedded) verify(valid map[string]struct{}) (verified, error) {
	v := verified{Windows: e.warehouse.windows()}
	v.Loaded, _ = e.warehouse.loaded()
	missing, duplicated, unexpected, err := e.warehouse.tally(valid)
	if err != nil {
		return v, err
	}
	v.Missing, v.Extra = missing, duplicated+unexpected
	v.ExactlyOnce = v.Missing == 0 && v.Extra == 0 && v.Loaded == int64(len(valid))
	return v, nil
}

func (e *embedded) close() {
	if e.warehouse != nil {
		_ = e.warehouse.Close()
	}
	if e.kafka != nil {
		e.kafka.Close()
	}
	if e.logFile != nil {
		_ = e.logFile.Close()
	}
}
