// Package stack is what `offload demo` and the in-process benchmark
// (bench/rig) run the appliance against, all in one process: a Kafka
// (franz-go's kfake, or a topic of the run's own on given brokers), a
// test warehouse (bench/testwarehouse), the appliance's log file and
// admin token, and the configuration that points the appliance at them.
// The command starts the appliance itself on a started Stack
// (cmd/offload); the Stack checks what reached the warehouse.
package stack

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/offload/offload/bench/gen"
	"github.com/offload/offload/bench/testwarehouse"
	"github.com/offload/offload/internal/admin"
	"github.com/offload/offload/internal/config"
)

// Options say which Kafka and warehouse a Stack starts.
type Options struct {
	// Brokers is a Kafka to use; empty: an in-process one.
	Brokers []string
	// Topic is the topic the appliance consumes, created when missing
	// ["orders"].
	Topic      string
	Partitions int
	// Warehouse is the test warehouse's type (testwarehouse.Types)
	// ["snowflake"].
	Warehouse string
}

// Stack is a started Kafka and test warehouse with the appliance's log
// file and admin token. Close stops what it started.
type Stack struct {
	// Dir holds the appliance's data directory (Dir/data), its log and
	// the warehouse's files.
	Dir     string
	LogPath string
	// Log is the open log file the appliance writes to.
	Log *os.File
	// Token is the admin API's bearer token.
	Token     string
	Topic     string
	Brokers   []string
	Warehouse testwarehouse.Warehouse

	kafka *kfake.Cluster // nil with external brokers

	mu sync.Mutex
	up bool // the warehouse accepts connections
}

// Start starts Kafka (unless o.Brokers), creating the topic, and the
// warehouse, with the log file dir/offload.log.
func Start(dir string, o Options) (*Stack, error) {
	s := &Stack{Dir: dir, LogPath: filepath.Join(dir, "offload.log"), up: true, Topic: o.Topic, Brokers: o.Brokers}
	if s.Topic == "" {
		s.Topic = "orders"
	}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	var err error
	if s.Log, err = os.Create(s.LogPath); err != nil {
		return nil, err
	}
	if len(s.Brokers) == 0 {
		if s.kafka, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(o.Partitions), s.Topic)); err != nil {
			return nil, fmt.Errorf("in-process Kafka: %w", err)
		}
		s.Brokers = s.kafka.ListenAddrs()
	} else if err := gen.CreateTopicOn(s.Brokers, s.Topic, o.Partitions); err != nil {
		return nil, err
	}
	typ := o.Warehouse
	if typ == "" {
		typ = "snowflake"
	}
	if s.Warehouse, err = testwarehouse.New(typ, dir, false); err != nil {
		return nil, err
	}
	s.Token = rand.Text()
	ok = true
	return s, nil
}

// Config is the appliance's configuration on the stack (appliance id
// embedded, data in Dir/data, short intervals and retries, the admin API
// on a free loopback port with Token), adjusted by tune.
func (s *Stack) Config(tune func(*config.Config)) (*config.Config, error) {
	c := config.Default()
	c.ApplianceID, c.DataDir, c.DiskBudget = "embedded", filepath.Join(s.Dir, "data"), 4<<30
	c.ShutdownGrace = config.Duration(10 * time.Second)
	c.Kafka.Brokers, c.Kafka.Topics, c.Kafka.Group = s.Brokers, []string{s.Topic}, "offload-embedded-"+s.Topic
	c.Kafka.SessionTimeout = config.Duration(6 * time.Second)
	c.Engine.Interval = config.Duration(250 * time.Millisecond)
	s.Warehouse.Configure(&c.Warehouse)
	c.Loader.RetryBase, c.Loader.RetryMax = config.Duration(200*time.Millisecond), config.Duration(3*time.Second)
	c.Loader.BreakerCooldown = config.Duration(3 * time.Second)
	c.Admin = config.Admin{Listen: "127.0.0.1:0", Token: config.Secret(s.Token)}
	tune(&c)
	c.EnsureDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("BUG: the embedded configuration: %w", err)
	}
	return &c, nil
}

// DemoHooks are the demo's warehouse switch for the admin API.
func (s *Stack) DemoHooks() *admin.DemoHooks {
	return &admin.DemoHooks{WarehouseUp: s.warehouseUp, SetWarehouse: s.SetWarehouse}
}

func (s *Stack) warehouseUp() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.up
}

// SetWarehouse takes the warehouse down (it refuses connections) or
// brings it back up.
func (s *Stack) SetWarehouse(up bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if up == s.up {
		return nil
	}
	if up {
		if err := s.Warehouse.AcceptConnections(); err != nil {
			return err
		}
	} else {
		s.Warehouse.RefuseConnections()
	}
	s.up = up
	return nil
}

// Close stops the warehouse and Kafka and closes the log.
func (s *Stack) Close() {
	if s.Warehouse != nil {
		_ = s.Warehouse.Close()
	}
	if s.kafka != nil {
		s.kafka.Close()
	}
	if s.Log != nil {
		_ = s.Log.Close()
	}
}
