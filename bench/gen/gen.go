// Package gen generates realistic e-commerce events in offload's canonical
// shape and produces them to Kafka: stores with Zipf-skewed popularity,
// customers, baskets of items, several currencies, orders, payments,
// refunds and cancels, with chosen shares of duplicates, late events and
// malformed records. It remembers what it produced, so a run can be checked
// for exactly-once delivery afterwards.
package gen

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/offload/offload/engine/event"
)

// Options configures a Generator. Zero values take the defaults in brackets.
type Options struct {
	Topic string // [orders]
	// Rate is events per second; 0 means as fast as Kafka takes them.
	Rate float64
	// Count stops after this many events, Duration after this long (0:
	// until the context ends).
	Count    int
	Duration time.Duration
	// Schema is SchemaCanonical [default], SchemaShop (other field names,
	// nested; the appliance maps them with Mapping) or SchemaCSV.
	Schema string
	// Key is KeyOrder [default: the order id, so an order's events and
	// their duplicates share a partition] or KeyNone.
	Key string
	// DuplicateShare of events is sent twice (a producer retry) [0.02];
	// LateShare carries an event time LateBy in the past [0.01, 2m];
	// MalformedShare are not valid events at all [0.005].
	DuplicateShare, LateShare, MalformedShare float64
	LateBy                                    time.Duration
	Stores                                    int // [200], Zipf-skewed
	Customers                                 int // [50000]
	Seed                                      uint64
	// RunID prefixes every event id ("evt-RUN-N"), so one run's events can
	// be told apart in a warehouse that holds others [from Seed].
	RunID string
	// Batch is how many records go to Kafka at once [500].
	Batch int
}

// Schemas and keys.
const (
	SchemaCanonical = "canonical"
	SchemaShop      = "shop"
	SchemaCSV       = "csv"
	KeyOrder        = "order"
	KeyNone         = "none"
)

// csvColumns are the columns of SchemaCSV, in order.
var csvColumns = []string{"event_id", "order_id", "event_type", "store_id", "customer_id", "customer_email", "amount",
	"currency", "payment_method", "card_number", "channel", "country", "items", "event_time"}

// Mapping returns the topic mapping the appliance needs for schema.
func Mapping(schema string) event.Mapping {
	switch schema {
	case SchemaShop:
		return event.Mapping{Fields: map[string]string{"event_id": "id", "order_id": "orderId", "event_type": "type",
			"store_id": "shop.id", "customer_id": "customer.id", "customer_email": "customer.email", "amount": "total_price",
			"currency": "currency_code", "payment_method": "gateway", "card_number": "card", "channel": "source",
			"country": "country_code", "items": "line_items", "items.qty": "quantity", "items.unit_price": "price",
			"event_time": "created_at"}}
	case SchemaCSV:
		return event.Mapping{Format: event.FormatCSV, Columns: csvColumns}
	}
	return event.Mapping{}
}

// Validate checks the options.
func (o *Options) Validate() error {
	if o.Schema != "" && o.Schema != SchemaCanonical && o.Schema != SchemaShop && o.Schema != SchemaCSV {
		return fmt.Errorf("gen: schema %q is not allowed; use canonical, shop or csv", o.Schema)
	}
	if o.Key != "" && o.Key != KeyOrder && o.Key != KeyNone {
		return fmt.Errorf("gen: key %q is not allowed; use order or none", o.Key)
	}
	for name, v := range map[string]float64{"duplicates": o.DuplicateShare, "late": o.LateShare, "malformed": o.MalformedShare} {
		if v < 0 || v > 1 {
			return fmt.Errorf("gen: %s share %g is not between 0 and 1", name, v)
		}
	}
	if o.Rate < 0 || o.Count < 0 || o.Duration < 0 {
		return errors.New("gen: rate, count and duration must not be negative")
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.Schema == "" {
		o.Schema = SchemaCanonical
	}
	if o.Key == "" {
		o.Key = KeyOrder
	}
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
	if o.RunID == "" {
		o.RunID = strconv.FormatUint(o.Seed%(1<<32), 36)
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

	mu        sync.Mutex
	sum       Summary
	valid     map[string]struct{}
	malformed map[string]struct{}
	seq       int64
}

// New returns a Generator.
func New(opts Options) *Generator {
	opts.setDefaults()
	rng := rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x5eed))
	return &Generator{opts: opts, rng: rng, zipf: rand.NewZipf(rng, 1.2, 1, uint64(opts.Stores-1)),
		valid: map[string]struct{}{}, malformed: map[string]struct{}{}}
}

// RunID returns the prefix of this run's event ids ("evt-RUN-").
func (g *Generator) RunID() string { return g.opts.RunID }

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
	return maps.Clone(g.valid)
}

// MalformedIDs returns the event ids written into the malformed records
// (each appears in its raw bytes), so a run's dead letters can be checked.
func (g *Generator) MalformedIDs() map[string]struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return maps.Clone(g.malformed)
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
	id := "evt-" + g.opts.RunID + "-" + strconv.FormatInt(g.seq, 10)
	if g.rng.Float64() < g.opts.MalformedShare {
		g.malformed[id] = struct{}{}
		if g.opts.Schema == SchemaCSV {
			return &kgo.Record{Value: fmt.Appendf(nil, "%s,%s,order_placed", id, "ord-x")}, "malformed"
		}
		return &kgo.Record{Value: fmt.Appendf(nil, malformed[g.rng.IntN(len(malformed))], id)}, "malformed"
	}
	at := now
	kind := "valid"
	if g.rng.Float64() < g.opts.LateShare {
		at, kind = now.Add(-g.opts.LateBy), "late"
	}
	store := g.zipf.Uint64()
	order := "ord-" + strconv.FormatInt(g.seq, 36)
	items := make([]item, 1+g.rng.IntN(3))
	var total int64 // cents
	for i := range items {
		items[i] = item{sku: fmt.Sprintf("SKU-%05d", g.rng.IntN(20000)), qty: 1 + g.rng.IntN(3), cents: int64(199 + g.rng.IntN(9800))}
		total += int64(items[i].qty) * items[i].cents
	}
	cust := g.rng.IntN(g.opts.Customers)
	e := fields{id: id, order: order, typ: eventTypes[g.rng.IntN(len(eventTypes))], store: fmt.Sprintf("store-%03d", store),
		customer: fmt.Sprintf("cust-%06d", cust), email: fmt.Sprintf("customer%d@example.com", cust), amount: money(total),
		currency: currencies[g.rng.IntN(len(currencies))], card: fmt.Sprintf("4111 1111 1111 %04d", g.rng.IntN(10000)),
		channel: channels[g.rng.IntN(len(channels))], country: countries[g.rng.IntN(len(countries))], items: items,
		at: at.UTC().Format(time.RFC3339Nano)}
	g.valid[id] = struct{}{}
	r := &kgo.Record{Value: e.render(g.opts.Schema)}
	if g.opts.Key == KeyOrder {
		r.Key = []byte(order)
	}
	return r, kind
}

type item struct {
	sku   string
	qty   int
	cents int64
}

// fields are one event's values, rendered in a schema.
type fields struct {
	id, order, typ, store, customer, email, amount, currency, card, channel, country, at string
	items                                                                                []item
}

func money(cents int64) string { return fmt.Sprintf("%d.%02d", cents/100, cents%100) }

func (e *fields) render(schema string) []byte {
	switch schema {
	case SchemaShop:
		var li []byte
		for i, it := range e.items {
			if i > 0 {
				li = append(li, ',')
			}
			li = fmt.Appendf(li, `{"sku":"%s","quantity":%d,"price":"%s"}`, it.sku, it.qty, money(it.cents))
		}
		return fmt.Appendf(nil, `{"id":"%s","orderId":"%s","type":"%s","shop":{"id":"%s"},"customer":{"id":"%s","email":"%s"},"total_price":"%s","currency_code":"%s","gateway":"card","card":"%s","source":"%s","country_code":"%s","line_items":[%s],"created_at":"%s"}`,
			e.id, e.order, e.typ, e.store, e.customer, e.email, e.amount, e.currency, e.card, e.channel, e.country, li, e.at)
	case SchemaCSV:
		var li []byte
		for i, it := range e.items {
			if i > 0 {
				li = append(li, '|')
			}
			li = fmt.Appendf(li, "%s:%d:%s", it.sku, it.qty, money(it.cents))
		}
		return fmt.Appendf(nil, "%s,%s,%s,%s,%s,%s,%s,%s,card,%s,%s,%s,%s,%s",
			e.id, e.order, e.typ, e.store, e.customer, e.email, e.amount, e.currency, e.card, e.channel, e.country, li, e.at)
	}
	var li []byte
	for i, it := range e.items {
		if i > 0 {
			li = append(li, ',')
		}
		li = fmt.Appendf(li, `{"sku":"%s","qty":%d,"unit_price":"%s"}`, it.sku, it.qty, money(it.cents))
	}
	return fmt.Appendf(nil, `{"event_id":"%s","order_id":"%s","event_type":"%s","store_id":"%s","customer_id":"%s","customer_email":"%s","amount":"%s","currency":"%s","payment_method":"card","card_number":"%s","channel":"%s","country":"%s","items":[%s],"event_time":"%s"}`,
		e.id, e.order, e.typ, e.store, e.customer, e.email, e.amount, e.currency, e.card, e.channel, e.country, li, e.at)
}

// Run produces until ctx ends or Count events are sent, at Rate, and
// returns the summary. Records of one batch go with one ProduceSync, and
// a batch under way when ctx ends is finished (produce), so the returned
// Summary, ValidIDs and MalformedIDs hold exactly what Kafka acknowledged.
func (g *Generator) Run(ctx context.Context, cl *kgo.Client) (Summary, error) {
	o := g.opts
	start := time.Now()
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
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
		recs, kinds := g.Batch(n, time.Now())
		if err := g.produce(ctx, cl, recs); err != nil {
			return g.Summary(), err
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

// Batch returns the next n events at now, as Run produces them, and the
// kind of each record ("valid", "late", "malformed", "duplicate"): a
// duplicate copy follows its original, so there may be more than n. Run
// counts what it produced in the summary; a caller that produces nothing
// (a benchmark of the stages after ingest) can use the records' values.
func (g *Generator) Batch(n int, now time.Time) (recs []*kgo.Record, kinds []string) {
	recs = make([]*kgo.Record, 0, n+n/10)
	for range n {
		r, kind := g.next(now)
		r.Topic = g.opts.Topic
		recs, kinds = append(recs, r), append(kinds, kind)
		if kind != "malformed" && g.rngFloat() < g.opts.DuplicateShare {
			dup := *r
			recs, kinds = append(recs, &dup), append(kinds, "duplicate")
		}
	}
	return recs, kinds
}

// batchTimeout bounds the acknowledgement of a batch once Run's context
// has ended.
const batchTimeout = time.Minute

// produce sends one batch and waits for Kafka's acknowledgement, even when
// ctx ends meanwhile: a batch cut off half-way would leave records in Kafka
// that the summary does not count, or ids in ValidIDs that Kafka never
// received, and a run's exactly-once check would report them.
func (g *Generator) produce(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) error {
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	bounded := make(chan struct{})
	go func() {
		defer close(bounded)
		select {
		case <-pctx.Done():
		case <-ctx.Done():
			select {
			case <-pctx.Done():
			case <-time.After(batchTimeout):
				cancel()
			}
		}
	}()
	err := cl.ProduceSync(pctx, recs...).FirstErr()
	cancel()
	<-bounded
	if err != nil {
		return fmt.Errorf("gen: produce: %w", err)
	}
	return nil
}

func (g *Generator) rngFloat() float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rng.Float64()
}
