package rig

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/snowflakedb/gosnowflake"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/bench/check"
	"github.com/offload/offload/bench/gen"
	"github.com/offload/offload/internal/admin"
)

// External measures an appliance that runs on its own (a systemd
// service, say): the generator produces to the topic it consumes, the
// appliance's admin API tells when the rows are loaded and how much memory
// and CPU it used, and its warehouse (reached with a gosnowflake DSN)
// gives the latencies and the exactly-once check for this run's events.
type External struct {
	Brokers []string
	Topic   string
	// Appliance is its admin URL; Token the admin API's token, if any.
	Appliance    string
	Token        string
	WarehouseDSN string
	// Tables is the schema-qualified prefix of the warehouse tables, e.g.
	// "ANALYTICS.OFFLOAD.".
	Tables string
}

// Run produces events at rate (0: unlimited) in schema and measures
// their way through the appliance, progress going to progress.
func (x External) Run(events int, rate float64, schema string, progress io.Writer) (Result, error) {
	res := Result{Profile: ProfileExternal, Schema: schema}
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(x.Brokers...), kgo.ProducerBatchMaxBytes(4<<20))
	if err != nil {
		return res, err
	}
	defer cl.Close()
	start, err := kadm.NewClient(cl).ListEndOffsets(ctx, x.Topic)
	if err != nil {
		return res, fmt.Errorf("bench: topic %s: %w", x.Topic, err)
	}
	before, err := x.status()
	if err != nil {
		return res, err
	}
	if before.Loader == nil {
		return res, fmt.Errorf("bench: the appliance at %s has no warehouse configured", x.Appliance)
	}
	cpu0, _ := x.processMetrics()
	g := gen.New(gen.Options{Topic: x.Topic, Count: events, Rate: rate, Schema: schema, Seed: uint64(time.Now().UnixNano()), Batch: 2000})
	fmt.Fprintf(progress, "offload bench: producing %d events to %s (event ids evt-%s-*), watching %s\n", events, x.Topic, g.RunID(), x.Appliance)
	began := time.Now()
	var peakRSS float64
	produced, err := produceUntilLoaded(ctx, g, cl, 200*time.Millisecond, func(produced bool) bool {
		if _, rss := x.processMetrics(); rss > peakRSS {
			peakRSS = rss
		}
		st, err := x.status()
		return err == nil && produced && st.Loader != nil && st.Loader.Rows-before.Loader.Rows >= g.Summary().Valid
	})
	if errors.Is(err, errNotLoaded) {
		return res, fmt.Errorf("bench: the appliance did not load the run's events within 30 minutes")
	}
	if err != nil {
		return res, err
	}
	loaded := time.Now()
	after, err := x.status()
	if err != nil {
		return res, err
	}
	cpu1, _ := x.processMetrics()
	sum := g.Summary()
	res.Events, res.ValidEvents = sum.Produced, sum.Valid
	res.Seconds = loaded.Sub(began).Seconds()
	res.EventsPerSec = float64(sum.Produced) / res.Seconds
	res.ProduceEventsPerSec = float64(sum.Produced) / produced.Sub(began).Seconds()
	res.LoaderRowsPerSec = float64(sum.Valid) / res.Seconds
	res.PeakRSSBytes, res.CPUSeconds = int64(peakRSS), cpu1-cpu0
	res.Deduplicated = after.Engine.Deduplicated - before.Engine.Deduplicated
	res.DeadLettered = after.Engine.Rejected - before.Engine.Rejected
	res.Loads = after.Loader.Loaded - before.Loader.Loaded
	res.BytesShipped, res.RawBytes = after.Loader.BytesShipped-before.Loader.BytesShipped, sum.Bytes
	res.BytesShippedRatio = float64(res.BytesShipped) / float64(res.RawBytes)

	if err := x.checkWarehouse(g, &res); err != nil {
		return res, err
	}
	bare, err := bareConsumerFrom(x.Brokers, x.Topic, start, sum.Produced)
	if err != nil {
		return res, err
	}
	res.BareConsumerEventsPerSec, res.Ratio = bare, res.EventsPerSec/bare
	return res, nil
}

// client is the appliance's admin API.
func (x External) client() *admin.Client { return admin.NewClient(x.Appliance, x.Token) }

func (x External) status() (admin.Status, error) {
	st, err := x.client().Status(context.Background())
	if err != nil {
		return st, fmt.Errorf("bench: the appliance's admin API: %w", err)
	}
	return st, nil
}

// processMetrics reads the appliance's CPU seconds and resident memory
// from /metrics (zero when it does not answer).
func (x External) processMetrics() (cpu, rss float64) {
	m, _ := x.client().Metrics(context.Background(), "process_cpu_seconds_total", "process_resident_memory_bytes")
	return m["process_cpu_seconds_total"], m["process_resident_memory_bytes"]
}

// checkWarehouse takes this run's rows from the warehouse: latencies from
// their lineage and the exactly-once check against the generator.
func (x External) checkWarehouse(g *gen.Generator, res *Result) error {
	cfg, err := gosnowflake.ParseDSN(x.WarehouseDSN)
	if err != nil {
		return fmt.Errorf("bench: OFFLOAD_BENCH_WAREHOUSE_DSN is not a gosnowflake DSN: %w", err)
	}
	db := sql.OpenDB(gosnowflake.NewConnector(gosnowflake.SnowflakeDriver{}, *cfg))
	defer db.Close()
	like := "evt-" + g.RunID() + "-%"
	if res.Latencies, err = check.RunLatencies(db, x.Tables, like); err != nil {
		return fmt.Errorf("bench: the warehouse: %w", err)
	}
	rows, err := db.Query(`SELECT EVENT_ID, COUNT(*) FROM `+x.Tables+`OFFLOAD_TRANSACTIONS WHERE EVENT_ID LIKE ? GROUP BY EVENT_ID`, like)
	if err != nil {
		return fmt.Errorf("bench: the warehouse: %w", err)
	}
	missing, duplicated, unexpected, err := check.TallyOnce(rows, g.ValidIDs())
	if err != nil {
		return err
	}
	res.Missing, res.Extra = missing, duplicated+unexpected
	res.ExactlyOnce = res.Missing == 0 && res.Extra == 0
	return nil
}
