package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/internal/admin"
	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/internal/snowtest"
	"github.com/offload/offload/tui"
)

// embedded is the appliance run in-process with what it talks to: a Kafka
// (in-process unless brokers are given) and the Snowflake-protocol test
// server as its warehouse. `offload demo` and `offload bench` run on it.
type embedded struct {
	dir, logPath, adminAddr, token string
	topic                          string
	brokers                        []string
	kafka                          *kfake.Cluster // nil with external brokers
	warehouse                      *snowtest.Server
	daemonStop                     context.CancelFunc
	daemonDone                     chan error
	logFile                        *os.File

	mu sync.Mutex
	up bool // the warehouse accepts connections
}

// embeddedKafka says which Kafka the embedded appliance consumes: an
// in-process one when brokers is empty, else topic (created when
// missing) on those brokers.
type embeddedKafka struct {
	brokers    []string
	topic      string
	partitions int
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
	e.warehouse, err = snowtest.New(snowtest.Options{Path: e.warehouseFile(), Dir: filepath.Join(dir, "warehouse-stage")})
	if err != nil {
		return nil, fmt.Errorf("warehouse: %w", err)
	}
	password := randomHex(12)
	e.token = randomHex(16)
	e.warehouse.AddUser(snowtest.User{Name: "OFFLOAD", Password: password})

	c := config.Default()
	c.ApplianceID, c.DataDir, c.DiskBudget = "embedded", filepath.Join(dir, "data"), 4<<30
	c.ShutdownGrace = config.Duration(10 * time.Second)
	c.Kafka.Brokers, c.Kafka.Topics, c.Kafka.Group = e.brokers, []string{e.topic}, "offload-embedded-"+e.topic
	c.Kafka.SessionTimeout = config.Duration(6 * time.Second)
	c.Engine.Interval = config.Duration(250 * time.Millisecond)
	c.Warehouse = config.Warehouse{Type: "snowflake", Account: e.warehouse.Account(), User: "OFFLOAD", Database: "OFFLOAD_DB",
		Schema: "PUBLIC", Host: "127.0.0.1", Port: e.warehouse.Port(), Protocol: "http", Auth: "password",
		Password: config.Secret(password), Stage: "OFFLOAD_STAGE",
		Tables:       config.WarehouseTables{Transactions: "OFFLOAD_TRANSACTIONS", Windows: "OFFLOAD_WINDOWS", Ledger: "OFFLOAD_LOAD_LEDGER"},
		LoginTimeout: config.Duration(2 * time.Second), RequestTimeout: config.Duration(5 * time.Second)}
	c.Loader.RetryBase, c.Loader.RetryMax = config.Duration(200*time.Millisecond), config.Duration(3*time.Second)
	c.Loader.BreakerCooldown = config.Duration(3 * time.Second)
	c.Admin = config.Admin{Listen: "127.0.0.1:0", Token: config.Secret(e.token)}
	tune(&c)
	c.EnsureDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("BUG: the embedded configuration: %w", err)
	}

	log, level := newLogger(c.Log, e.logFile)
	started := make(chan string, 1)
	dctx, dstop := context.WithCancel(context.Background())
	e.daemonStop, e.daemonDone = dstop, make(chan error, 1)
	ext := daemonExtras{started: func(a string) { started <- a }}
	if demo {
		ext.demo = &admin.DemoHooks{WarehouseUp: e.warehouseUp, SetWarehouse: e.setWarehouse}
	}
	go func() { e.daemonDone <- daemon(dctx, &c, log, reloader{level: level}, ext) }()
	select {
	case e.adminAddr = <-started:
	case err := <-e.daemonDone:
		return nil, fmt.Errorf("the pipeline did not start: %v (log: %s)", err, e.logPath)
	case <-time.After(60 * time.Second):
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
	return createTopicWith(cl, topic, partitions)
}

// createTopicWith creates topic through cl unless it exists.
func createTopicWith(cl *kgo.Client, topic string, partitions int) error {
	brokers := cl.OptValue(kgo.SeedBrokers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := kadm.NewClient(cl).CreateTopic(ctx, int32(partitions), -1, nil, topic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("cannot create topic %s on %v: %w", topic, brokers, err)
	}
	if res.Err != nil && !errors.Is(res.Err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("cannot create topic %s on %v: %w", topic, brokers, res.Err)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (e *embedded) warehouseFile() string { return filepath.Join(e.dir, "warehouse.duckdb") }

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

func (e *embedded) count(q string) int64 {
	var n int64
	_ = e.warehouse.DB().QueryRow(q).Scan(&n)
	return n
}

// waitLoaded waits (bounded) until the warehouse holds n distinct events.
func (e *embedded) waitLoaded(n int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if e.count(`SELECT count(DISTINCT EVENT_ID) FROM PUBLIC.OFFLOAD_TRANSACTIONS`) >= int64(n) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
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
	v := verified{Loaded: e.count(`SELECT count(*) FROM PUBLIC.OFFLOAD_TRANSACTIONS`),
		Windows: e.count(`SELECT count(*) FROM PUBLIC.OFFLOAD_WINDOWS`)}
	rows, err := e.warehouse.DB().Query(`SELECT EVENT_ID, count(*) FROM PUBLIC.OFFLOAD_TRANSACTIONS GROUP BY ALL`)
	if err != nil {
		return v, err
	}
	missing, duplicated, unexpected, err := tallyOnce(rows, valid)
	if err != nil {
		return v, err
	}
	v.Missing, v.Extra = missing, duplicated+unexpected
	v.ExactlyOnce = v.Missing == 0 && v.Extra == 0 && v.Loaded == int64(len(valid))
	return v, nil
}

// tallyOnce reads (event id, copies) rows and counts the valid events
// missing, the copies beyond one of each (duplicated), and the copies of
// no valid event (unexpected).
func tallyOnce(rows *sql.Rows, valid map[string]struct{}) (missing, duplicated, unexpected int64, err error) {
	defer rows.Close()
	return tallyCopies(func(yield func(string, int64) bool) error {
		for rows.Next() {
			var id string
			var n int64
			if err := rows.Scan(&id, &n); err != nil {
				return err
			}
			if !yield(id, n) {
				return nil
			}
		}
		return rows.Err()
	}, valid)
}

// tallyCopies is tallyOnce over the (event id, copies) pairs each yields.
func tallyCopies(each func(yield func(id string, n int64) bool) error, valid map[string]struct{}) (missing, duplicated, unexpected int64, err error) {
	seen := 0
	err = each(func(id string, n int64) bool {
		if _, ok := valid[id]; ok {
			seen++
			duplicated += n - 1
		} else {
			unexpected += n
		}
		return true
	})
	if err != nil {
		return 0, 0, 0, err
	}
	return int64(len(valid) - seen), duplicated, unexpected, nil
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
