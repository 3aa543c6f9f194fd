package event

import "time"

// Event is the canonical transaction event (docs/ARCHITECTURE.md, "Engine:
// from the WAL to the outbox"; its fields are listed in docs/CONFIG.md,
// "Topics"), cleaned, validated, masked and enriched.
//
// Its strings are immutable and stay valid after later Decode calls (they
// may share a backing block with other events' strings). Items is the one
// part Decode reuses: decoding into the same Event again overwrites the
// items of the previous record, so a caller that keeps an Event past the
// next Decode into it copies Items first, or decodes into a fresh Event.
type Event struct {
	// EventID is the dedupe key. Never empty in an accepted event unless
	// the configuration drops it from the required fields.
	EventID string
	OrderID string
	// EventType is one of EventOrderPlaced, EventPaymentCaptured,
	// EventRefund, EventCancel.
	EventType  string
	StoreID    string
	CustomerID string
	// CustomerEmailHash is the lower-case hex HMAC-SHA256, under
	// Config.HashKey, of the trimmed, lower-cased e-mail address; "" when
	// the record has none. The address itself is never kept.
	CustomerEmailHash string
	// Amount is always >= 0 with the default bounds: a refund carries a
	// positive amount and EventType gives the sign.
	Amount Decimal
	// Currency is an upper-case ISO 4217 code from the embedded list.
	Currency      string
	PaymentMethod string
	// CardLast4 holds at most the last four digits of the card number.
	CardLast4 string
	// Channel is "" or one of ChannelWeb, ChannelApp, ChannelPOS.
	Channel string
	// Country is "" or an upper-case ISO 3166-1 alpha-2 code.
	Country   string
	Items     []Item
	EventTime time.Time // UTC

	// BaseAmount is Amount in Config.Rates' base currency, rounded half to
	// even to 4 places. It is meaningful only when HasBaseAmount is set:
	// an event in a currency the rates table lacks is kept (the currency
	// is valid, only the table is incomplete) with HasBaseAmount false, to
	// be stored as NULL and counted.
	BaseAmount    Decimal
	HasBaseAmount bool
	// Region and Timezone come from Config.Reference (the row whose key
	// equals the event's key field, usually store_id); HasReference says
	// whether a row was found.
	Region       string
	Timezone     string
	HasReference bool
	// Attributes is the canonical JSON object of the record's unmapped
	// keys (docs/CONFIG.md, "Unmapped fields and extra columns"): keys
	// sorted, dotted paths for keys inside mapped objects, no white space,
	// e-mail addresses and card numbers masked. "" when there are none or
	// the topic sets keep_unmapped: false.
	Attributes string
	// Extras is the JSON object of the record's extra columns by name,
	// each in its type's form: a string, an integer, a decimal as a
	// string, a timestamp as an RFC 3339 string in UTC, a boolean. ""
	// when the record has none.
	Extras string
	// UnmappedFields names the record's unmapped keys (kept or not, less
	// the promoted ones), for counting. Decode never overwrites it.
	UnmappedFields []string
	// RawSize is the size in bytes of the raw record.
	RawSize int
}

// Item is one line of an order.
type Item struct {
	SKU       string
	Qty       int
	UnitPrice Decimal
}

// Event types.
const (
	EventOrderPlaced     = "order_placed"
	EventPaymentCaptured = "payment_captured"
	EventRefund          = "refund"
	EventCancel          = "cancel"
)

// Channels.
const (
	ChannelWeb = "web"
	ChannelApp = "app"
	ChannelPOS = "pos"
)

// field identifies a canonical field. The order is the order in which
// Decode checks fields, so the reject for a record with several problems is
// deterministic.
type field uint8

const (
	fEventID field = iota
	fOrderID
	fEventType
	fStoreID
	fCustomerID
	fCustomerEmail
	fAmount
	fCurrency
	fPaymentMethod
	fCardNumber
	fChannel
	fCountry
	fItems
	fEventTime
	numTop // fields of the record itself
)

// Item sub-fields follow the record's fields.
const (
	fItemSku       = numTop
	fItemQty       = numTop + 1
	fItemUnitPrice = numTop + 2
	numFields      = numTop + 3
)

var fieldNames = [numFields]string{
	fEventID:       "event_id",
	fOrderID:       "order_id",
	fEventType:     "event_type",
	fStoreID:       "store_id",
	fCustomerID:    "customer_id",
	fCustomerEmail: "customer_email",
	fAmount:        "amount",
	fCurrency:      "currency",
	fPaymentMethod: "payment_method",
	fCardNumber:    "card_number",
	fChannel:       "channel",
	fCountry:       "country",
	fItems:         "items",
	fEventTime:     "event_time",
	fItemSku:       "items.sku",
	fItemQty:       "items.qty",
	fItemUnitPrice: "items.unit_price",
}

// itemKeys are the default source keys of the item sub-fields.
var itemKeys = [3]string{"sku", "qty", "unit_price"}

func (f field) String() string { return fieldNames[f] }

func lookupField(name string) (field, bool) {
	for i, n := range fieldNames {
		if n == name {
			return field(i), true
		}
	}
	return 0, false
}

// Fields returns the canonical field names a Mapping may map, in order:
// the record's fields, then the item sub-fields "items.sku", "items.qty"
// and "items.unit_price".
func Fields() []string {
	out := make([]string, numFields)
	copy(out, fieldNames[:])
	return out
}

// stringOf returns the cleaned value of a scalar string field of ev, used
// to join reference data.
func (ev *Event) stringOf(f field) string {
	switch f {
	case fEventID:
		return ev.EventID
	case fOrderID:
		return ev.OrderID
	case fEventType:
		return ev.EventType
	case fStoreID:
		return ev.StoreID
	case fCustomerID:
		return ev.CustomerID
	case fCustomerEmail:
		return ev.CustomerEmailHash
	case fCurrency:
		return ev.Currency
	case fPaymentMethod:
		return ev.PaymentMethod
	case fCardNumber:
		return ev.CardLast4
	case fChannel:
		return ev.Channel
	case fCountry:
		return ev.Country
	}
	return ""
}
