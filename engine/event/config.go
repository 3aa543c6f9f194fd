package event

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Config configures a Decoder.
type Config struct {
	Mapping `yaml:",inline"`

	// Required lists the canonical fields a record must have (after
	// trimming; JSON null and "" count as absent). Default:
	// DefaultRequired.
	Required []string `yaml:"required"`
	// MinAmount and MaxAmount bound Amount (inclusive). Defaults 0 and
	// DefaultMaxAmount. Items' unit prices are bounded by [0, MaxAmount].
	MinAmount Decimal `yaml:"min_amount"`
	MaxAmount Decimal `yaml:"max_amount"`
	// MaxFutureSkew is how far past Now an event time may lie. Default 24h.
	MaxFutureSkew time.Duration `yaml:"max_future_skew"`
	// MaxRecordBytes bounds a raw record. Default 1 MiB.
	MaxRecordBytes int `yaml:"max_record_bytes"`
	// MaxItems bounds an event's items. Default 1000.
	MaxItems int `yaml:"max_items"`
	// Filters are checked in order on the raw mapped values, before
	// cleaning and validation; the first that matches filters the record.
	Filters []Rule `yaml:"filters"`

	// HashKey keys the HMAC-SHA256 of e-mail addresses and of card numbers
	// found in identifier fields. At least 16 bytes; it comes from a file
	// or the environment, never from the YAML file, and never appears in
	// errors.
	HashKey []byte `yaml:"-"`
	// Rates, if set, gives BaseAmount.
	Rates *Rates `yaml:"-"`
	// Reference, if set, gives Region and Timezone.
	Reference *Reference `yaml:"-"`
	// Now is the clock for the future-time check. Default time.Now.
	Now func() time.Time `yaml:"-"`
}

// Rule filters records whose field equals one of Equals or starts with one
// of Prefix. Comparisons are on the trimmed raw value (before aliases) and
// ignore ASCII letter case, so "TEST-" also catches "test-42". A field the
// record lacks never matches.
type Rule struct {
	// Name labels the rule in metrics ("test_orders", "heartbeats").
	Name string `yaml:"name"`
	// Field is a canonical field name other than items.
	Field  string   `yaml:"field"`
	Equals []string `yaml:"equals"`
	Prefix []string `yaml:"prefix"`
}

// Defaults.
var (
	DefaultRequired = []string{"event_id", "event_type", "store_id", "amount", "currency", "event_time"}
	// DefaultMaxAmount is 10^12: above any single real order in every
	// listed currency (10^12 VND is about 40 million USD), below the
	// int64 limit with room for sums; tighten it per deployment.
	DefaultMaxAmount = Decimal(1_000_000_000_000) * DecimalUnit
	// MaxStoredAmount is the largest amount the outbox stores: its
	// columns are DECIMAL(18,4), 99,999,999,999,999.9999. max_amount and
	// min_amount may not go past it, and a base-currency amount past it
	// is rejected (base_amount_overflow).
	MaxStoredAmount = Decimal(999_999_999_999_999_999)
)

const (
	DefaultMaxFutureSkew  = 24 * time.Hour
	DefaultMaxRecordBytes = 1 << 20
	DefaultMaxItems       = 1000
	// MinHashKeyBytes is the shortest HashKey accepted.
	MinHashKeyBytes = 16
	// maxItemsLimit caps MaxItems.
	maxItemsLimit = 100000
)

// EnsureDefaults fills options left at their zero value.
func (c *Config) EnsureDefaults() {
	if c.Format == "" {
		c.Format = FormatJSON
	}
	if c.Required == nil {
		c.Required = append([]string(nil), DefaultRequired...)
	}
	if c.MaxAmount == 0 {
		c.MaxAmount = DefaultMaxAmount
	}
	if c.MaxFutureSkew == 0 {
		c.MaxFutureSkew = DefaultMaxFutureSkew
	}
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if c.MaxItems == 0 {
		c.MaxItems = DefaultMaxItems
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate checks the configuration (after EnsureDefaults) and returns
// every problem, each naming its option under prefix. It does not check
// HashKey, which is loaded (or generated) after the configuration file is
// read; NewDecoder does.
func (c *Config) Validate(prefix string) error {
	_, err := c.compile(prefix)
	return err
}

func (c *Config) compile(prefix string) (*compiled, error) {
	var errs []string
	add := func(opt, format string, args ...any) {
		errs = append(errs, optName(prefix, opt)+": "+fmt.Sprintf(format, args...))
	}
	m, err := compileMapping(&c.Mapping, prefix)
	if err != nil {
		errs = append(errs, strings.Split(err.Error(), "\n")...)
	}
	seenReq := map[string]bool{}
	for _, name := range c.Required {
		f, ok := lookupField(name)
		switch {
		case !ok || f >= numTop:
			add("required", "%q is not a canonical field; use one of %s", name, strings.Join(fieldNames[:numTop], ", "))
			continue
		case seenReq[name]:
			add("required", "%q is listed twice", name)
		case m != nil && m.ignored[f]:
			add("required", "%q is required but fields.%s is \"-\"", name, name)
		case m != nil && !m.json && !m.hasField[f] && len(m.columns) > 0:
			add("required", "%q is required but no column holds it (map it with fields.%s)", name, name)
		}
		seenReq[name] = true
	}
	if c.MaxAmount > MaxStoredAmount {
		add("max_amount", "%s is above %s, the largest amount the outbox stores", c.MaxAmount, MaxStoredAmount)
	}
	if c.MinAmount < -MaxStoredAmount {
		add("min_amount", "%s is below -%s, the smallest amount the outbox stores", c.MinAmount, MaxStoredAmount)
	}
	if c.MinAmount > c.MaxAmount {
		add("min_amount", "%s is above max_amount %s", c.MinAmount, c.MaxAmount)
	}
	if c.MaxFutureSkew < 0 {
		add("max_future_skew", "%s must not be negative (e.g. 24h)", c.MaxFutureSkew)
	}
	if c.MaxRecordBytes < 1 {
		add("max_record_bytes", "%d must be positive (e.g. 1048576)", c.MaxRecordBytes)
	}
	if c.MaxItems < 1 || c.MaxItems > maxItemsLimit {
		add("max_items", "%d is out of range; use 1 to %d", c.MaxItems, maxItemsLimit)
	}
	names := map[string]bool{}
	for i, r := range c.Filters {
		opt := fmt.Sprintf("filters[%d]", i)
		if r.Name == "" {
			add(opt+".name", "required (it labels the filtered-records counter)")
		} else if names[r.Name] {
			add(opt+".name", "%q is used by another rule", r.Name)
		}
		names[r.Name] = true
		if f, ok := lookupField(r.Field); !ok || f >= numTop || f == fItems {
			add(opt+".field", "%q is not allowed; use a canonical field other than items: %s", r.Field, strings.Join(scalarFieldNames(), ", "))
		}
		if len(r.Equals) == 0 && len(r.Prefix) == 0 {
			add(opt, "set equals or prefix")
		}
		for _, p := range r.Prefix {
			if p == "" {
				add(opt+".prefix", "an empty prefix would filter every record")
			}
		}
	}
	if c.Reference != nil {
		if f, ok := lookupField(c.Reference.Key()); !ok || f >= numTop || f == fItems {
			errs = append(errs, fmt.Sprintf("event: reference %s: key column %q is not a canonical field", c.Reference.name, c.Reference.Key()))
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return nil, errors.New(strings.Join(errs, "\n"))
	}
	return m, nil
}

func scalarFieldNames() []string {
	var out []string
	for f := field(0); f < numTop; f++ {
		if f != fItems {
			out = append(out, fieldNames[f])
		}
	}
	return out
}
