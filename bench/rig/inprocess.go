package rig

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/bench/gen"
	"github.com/offload/offload/bench/stack"
	"github.com/offload/offload/engine/event"
	"github.com/offload/offload/internal/admin"
	"github.com/offload/offload/internal/config"
)

// Appliance is the appliance running in-process on a stack.
type Appliance interface {
	// Status reads its status document (zero when it does not answer).
	Status() admin.Status
	// Stop drains and stops it, as on SIGTERM.
	Stop() error
	// Close stops it if it still runs, then the stack.
	Close()
}

// Start starts a stack in dir with o and the appliance on it, its
// configuration adjusted by tune. The command supplies it: it owns the
// daemon (cmd/offload).
type Start func(dir string, o stack.Options, tune func(*config.Config)) (*stack.Stack, Appliance, error)

// InProcessOptions are the settings of the in-process profile.
type InProcessOptions struct {
	// Dir holds the appliance's data, its log and the warehouse.
	Dir string
	// Stack says which Kafka (in-process unless brokers are given, a
	// topic of the run's own then) and which test warehouse.
	Stack  stack.Options
	Events int
	// Rate is events per second (0: as fast as Kafka takes them).
	Rate float64
	// Schema is the generator's source schema (gen.Schema*), which the
	// appliance maps.
	Schema string
	// Progress receives a line when the run is delivered.
	Progress io.Writer
}

// InProcess runs the in-process profile: o.Events through the appliance
// start starts, measured from the appliance's status, the warehouse and
// this process's resources, then a bare consumer over the same records.
func InProcess(o InProcessOptions, start Start) (Result, error) {
	res := Result{Profile: ProfileInProcess, Partitions: o.Stack.Partitions, Schema: o.Schema, Warehouse: o.Stack.Warehouse}
	s, app, err := start(o.Dir, o.Stack, func(c *config.Config) {
		c.ApplianceID = "bench"
		c.Outbox.SealAge = config.Duration(2 * time.Second)
		c.Topics = map[string]event.Config{c.Kafka.Topics[0]: {Mapping: gen.Mapping(o.Schema)}}
	})
	if err != nil {
		return res, err
	}
	defer app.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.Brokers...), kgo.ProducerBatchMaxBytes(4<<20))
	if err != nil {
		return res, err
	}
	defer cl.Close()
	startOffsets, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), s.Topic)
	if err != nil {
		return res, err
	}
	g := gen.New(gen.Options{Topic: s.Topic, Count: o.Events, Rate: o.Rate, Schema: o.Schema, Seed: uint64(time.Now().UnixNano()), Batch: 2000})

	began := time.Now()
	// Stages: when each reached the end of the run's data.
	var ingested, consumed time.Time
	produced, err := produceUntilLoaded(context.Background(), g, cl, 100*time.Millisecond, func(produced bool) bool {
		if !produced {
			return false
		}
		st := app.Status()
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
		return res, fmt.Errorf("bench: not delivered within 30 minutes (log: %s)", s.LogPath)
	}
	if err != nil {
		return res, err
	}
	loaded := time.Now()
	st := app.Status()
	sum := g.Summary()
	fmt.Fprintf(o.Progress, "offload bench: delivered in %s; measuring latencies and the bare consumer\n", loaded.Sub(began).Round(time.Millisecond))

	res.Events, res.ValidEvents = sum.Produced, sum.Valid
	res.Seconds = loaded.Sub(began).Seconds()
	res.EventsPerSec = float64(sum.Produced) / res.Seconds
	res.ProduceEventsPerSec = float64(sum.Produced) / produced.Sub(began).Seconds()
	res.IngestEventsPerSec = float64(sum.Produced) / ingested.Sub(began).Seconds()
	res.EngineEventsPerSec = float64(sum.Produced) / consumed.Sub(began).Seconds()
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
	if res.Latencies, err = s.Warehouse.Latencies(); err != nil {
		return res, err
	}

	if err := app.Stop(); err != nil {
		return res, err
	}
	v, err := s.Verify(g.ValidIDs())
	if err != nil {
		return res, err
	}
	res.ExactlyOnce, res.Missing, res.Extra = v.ExactlyOnce, v.Missing, v.Extra

	// The bare consumer: the same topic from the start, read and dropped.
	bare, err := bareConsumerFrom(s.Brokers, s.Topic, startOffsets, sum.Produced)
	if err != nil {
		return res, err
	}
	res.BareConsumerEventsPerSec = bare
	res.Ratio = res.EventsPerSec / bare
	return res, nil
}
