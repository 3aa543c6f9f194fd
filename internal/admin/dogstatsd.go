package admin

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/DataDog/datadog-go/v5/statsd"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// DogStatsD sends the metrics of a Prometheus registry to a Datadog agent
// (docs/METRICS.md, deploy/datadog/README.md): each metric named as in
// Prometheus with the "offload_" prefix turned into "offload.", its labels
// as tags. Gauges go as gauges; counters as counts of their increase since
// the last flush; histograms as the count of observations since the last
// flush (NAME.count) and their average over it (NAME.avg, a gauge); the
// agent's OpenMetrics check gives the buckets.
type DogStatsD struct {
	client *statsd.Client
	g      prometheus.Gatherer
	tags   []string
	log    *slog.Logger
	last   map[string]float64 // counter series → value at the last flush
}

// NewDogStatsD connects (UDP, no handshake) to the agent at addr.
func NewDogStatsD(addr string, g prometheus.Gatherer, tags []string, log *slog.Logger) (*DogStatsD, error) {
	c, err := statsd.New(addr, statsd.WithoutTelemetry(), statsd.WithoutClientSideAggregation())
	if err != nil {
		return nil, fmt.Errorf("datadog.statsd_addr %s: %w", addr, err)
	}
	return &DogStatsD{client: c, g: g, tags: tags, log: log, last: map[string]float64{}}, nil
}

// Run flushes every interval until ctx is done, then closes the client.
func (d *DogStatsD) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	defer d.client.Close()
	for {
		d.Flush()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Flush sends the registry's current values once.
func (d *DogStatsD) Flush() {
	families, err := d.g.Gather()
	if err != nil {
		d.log.Warn("datadog: gathering metrics failed; sending what there is", "err", err)
	}
	for _, f := range families {
		name, ok := strings.CutPrefix(f.GetName(), "offload_")
		if !ok {
			continue // the Go runtime's and the process's: the agent has its own
		}
		name = "offload." + name
		for _, m := range f.GetMetric() {
			tags := d.tagsOf(m)
			switch f.GetType() {
			case dto.MetricType_GAUGE:
				d.send(d.client.Gauge(name, m.GetGauge().GetValue(), tags, 1))
			case dto.MetricType_COUNTER:
				d.send(d.client.Count(name, int64(d.delta(name, tags, m.GetCounter().GetValue())), tags, 1))
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				n := d.delta(name+".count", tags, float64(h.GetSampleCount()))
				sum := d.delta(name+".sum", tags, h.GetSampleSum())
				d.send(d.client.Count(name+".count", int64(n), tags, 1))
				if n > 0 {
					d.send(d.client.Gauge(name+".avg", sum/n, tags, 1))
				}
			}
		}
	}
	d.send(d.client.Flush())
}

func (d *DogStatsD) tagsOf(m *dto.Metric) []string {
	tags := append([]string(nil), d.tags...)
	for _, l := range m.GetLabel() {
		tags = append(tags, l.GetName()+":"+l.GetValue())
	}
	return tags
}

// delta returns how much a cumulative series grew since the last flush.
func (d *DogStatsD) delta(name string, tags []string, v float64) float64 {
	key := name + "|" + strings.Join(sortedCopy(tags), ",")
	delta := v - d.last[key]
	d.last[key] = v
	return max(delta, 0)
}

func (d *DogStatsD) send(err error) {
	if err != nil {
		d.log.Debug("datadog: send failed", "err", err)
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
