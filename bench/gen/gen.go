// Package gen generates realistic e-commerce events in offload's canonical
// shape and produces them to Kafka: stores with Zipf-skewed popularity,
// customers, baskets of items, several currencies, orders, payments,
// refunds and cancels, with chosen shares of duplicates, late events and
// malformed records. It remembers what it produced, so a run can be checked
// for exactly-once delivery afterwards.
package gen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Options configures a Generator. Zero values take the defaults in brackets.
type Options struct {
	Topic string // [orders]
	// Rate is events per second; 0 means as fast as Kafka takes them.
	Rate float64
	// Count stops after this many events (0: until the context ends).
	Count int
	// DuplicateShare of events is sent twice (a producer retry) [0.02];
	// LateShare carries an event time LateBy in the past [0.01, 2m];
	// MalformedShare are not valid events at all [0.005].
	DuplicateShare, LateShare, MalformedShare float64
	LateBy                                    time.Duration
	Stores                                    int // [200], Zipf-skewed
	Customers                                 int // [50000]
	Seed                                      uint64
	// Batch is how many records go to Kafka at once [500].
	Batch int
}

func (o *Options) setDefaults() {
	if o.Topic == "" {
		o.Topic = "orders"
	}
	if o.DuplicateShare == 0 {
		o.DuplicateShare = 0.02
	}
	if o.LateShare == 0 {
		o.LateShare = 0.01
	}
	if o.LateBy == 0 {
		o.LateBy = 2 * time.Minute
	}
	if o.MalformedShare == 0 {
		o.MalformedShare = 0.005
	}
	if o.Stores == 0 {
		o.Stores = 200
	}
	if o.Customers == 0 {
		o.Customers = 50000
	}
	if o.Batch == 0 {
		o.Batch = 500
	}
}

// Summary counts what a Generator produced.
type Summary struct {
	Produced   int64 `json:"produced"`   // records sent, every kind
	Valid      int64 `json:"valid"`      // distinct valid events
	Duplicates int64 `json:"duplicates"` // extra copies of valid events
	Late       int64 `json:"late"`       // valid events sent late
	Malformed  int64 `json:"malformed"`  // records that are not valid events
	Bytes      int64 `json:"bytes"`      // value bytes sent
}

// Generator produces events; its methods are safe for concurrent use.
type Generator struct {
	opts Options
	rng  *rand.Rand
	zipf *rand.Zipf

	mu    sync.Mutex
	sum   Summary
	valid map[string]struct{}
	seq   int64
}

// New returns a Generator.
func New(opts Options) *Generator {
	opts.setDefaults()
	rng := rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x5eed))
	return &Generator{opts: opts, rng: rng, zipf: rand.NewZipf(rng, 1.2, 1, uint64(opts.Stores-1)),
		valid: map[string]struct{}{}}
}

// Summary returns the counts so far.
func (g *Generator) Summary() Summary {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sum
}

// ValidIDs returns the event ids of every valid event produced.
func (g *Generator) ValidIDs() map[string]struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]struct{}, len(g.valid))
	for id := range g.valid {
		out[id] = struct{}{}
	}
	return out
}

var (
	eventTypes = []string{"order_placed", "order_placed", "order_placed", "payment_captured", "payment_captured", "refund", "cancel"}
	currencies = []string{"EUR", "EUR", "EUR", "USD", "USD", "GBP", "CHF", "SEK"}
	channels   = []string{"web", "web", "app", "pos"}
	countries  = []string{"DE", "FR", "NL", "GB", "US", "CH", "SE"}
	malformed  = []string{
		`{"event_id":"%s","amount":"12.00"`,             // broken JSON
		`{"event_id":"%s","event_type":"order_placed"}`, // required fields missing
		`{"event_id":"%s","event_type":"order_placed","store_id":"s","amount":"abc","currency":"EUR","event_time":"2026-01-01T00:00:00Z"}`,
		`{"event_id":"%s","event_type":"order_placed","store_id":"s","amount":"5","currency":"XYZ","event_time":"2026-01-01T00:00:00Z"}`,
	}
)

// next returns the next record and what kind it is.
func (g *Generator) next(now time.Time) (*kgo.Record, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.seq++
	id := "evt-" + strconv.FormatUint(g.opts.Seed%1000, 10) + "-" + strconv.FormatInt(g.seq, 10)
	if g.rng.Float64() < g.opts.MalformedShare {
		return &kgo.Record{Value: fmt.Appendf(nil, malformed[g.rng.IntN(len(malformed))], id)}, "malformed"
	}
	at := now
	kind := "valid"
	if g.rng.Float64() < g.opts.LateShare {
		at, kind = now.Add(-g.opts.LateBy), "late"
	}
	store := g.zipf.Uint64()
	order := "ord-" + strconv.FormatInt(g.seq, 36)
	items := 1 + g.rng.IntN(3)
	var basket []byte
	var total int64 // cents
	for i := 0; i < items; i++ {
		qty, price := 1+g.rng.IntN(3), int64(199+g.rng.IntN(9800))
		total += int64(qty) * price
		if i > 0 {
			basket = append(basket, ',')
		}
		basket = fmt.Appendf(basket, `{"sku":"SKU-%05d","qty":%d,"unit_price":"%d.%02d"}`, g.rng.IntN(20000), qty, price/100, price%100)
	}
	cust := g.rng.IntN(g.opts.Customers)
	v := fmt.Appendf(nil, `{"event_id":"%s","order_id":"%s","event_type":"%s","store_id":"store-%03d","customer_id":"cust-%06d","customer_email":"customer%d@example.com","amount":"%d.%02d","currency":"%s","payment_method":"card","card_number":"4111 1111 1111 %04d","channel":"%s","country":"%s","items":[%s],"event_time":"%s"}`,
		id, order, eventTypes[g.rng.IntN(len(eventTypes))], store, cust, cust, total/100, total%100,
		currencies[g.rng.IntN(len(currencies))], g.rng.IntN(10000), channels[g.rng.IntN(len(channels))],
		countries[g.rng.IntN(len(countries))], basket, at.UTC().Format(time.RFC3339Nano))
	g.valid[id] = struct{}{}
	return &kgo.Record{Key: []byte(order), Value: v}, kind
}

// Run produces until ctx ends or Count events are sent, at Rate, and
// returns the summary. Records of one batch go with one ProduceSync, so a
// returned Summary counts only what Kafka acknowledged.
func (g *Generator) Run(ctx context.Context, cl *kgo.Client) (Summary, error) {
	o := g.opts
	start := time.Now()
	sent := 0
	for ctx.Err() == nil && (o.Count == 0 || sent < o.Count) {
		n := o.Batch
		if o.Count > 0 {
			n = min(n, o.Count-sent)
		}
		if o.Rate > 0 {
			// Pace: batch k may start at k·Batch/Rate seconds.
			n = max(1, min(n, int(o.Rate/10)))
			due := start.Add(time.Duration(float64(sent) / o.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
					return g.Summary(), nil
				case <-time.After(d):
				}
			}
		}
		recs := make([]*kgo.Record, 0, n+n/10)
		var kinds []string
		now := time.Now()
		for i := 0; i < n; i++ {
			r, kind := g.next(now)
			r.Topic = o.Topic
			recs, kinds = append(recs, r), append(kinds, kind)
			if kind != "malformed" && g.rngFloat() < o.DuplicateShare {
				dup := *r
				recs, kinds = append(recs, &dup), append(kinds, "duplicate")
			}
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			if ctx.Err() != nil {
				return g.Summary(), nil
			}
			return g.Summary(), fmt.Errorf("gen: produce: %w", err)
		}
		g.mu.Lock()
		for i, r := range recs {
			g.sum.Produced++
			g.sum.Bytes += int64(len(r.Value))
			switch kinds[i] {
			case "malformed":
				g.sum.Malformed++
			case "duplicate":
				g.sum.Duplicates++
			case "late":
				g.sum.Late++
				g.sum.Valid++
			default:
				g.sum.Valid++
			}
		}
		g.mu.Unlock()
		sent += n
	}
	return g.Summary(), nil
}

func (g *Generator) rngFloat() float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rng.Float64()
}
