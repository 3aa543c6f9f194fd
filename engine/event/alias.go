package event

// Aliases. A trimmed value is normalised before the lookup: lower-cased,
// and '-', ' ', '.' and '/' turned into '_' ("ORDER-PLACED",
// "orders/create"); if that form is not in the table, camelCase is split
// too ("orderPlaced" → "order_placed"; tried second so that "iOS" stays
// "ios"). Keep the tables conservative: a wrong alias silently misfiles
// money.
var eventTypeAliases = map[string]string{
	"order_placed":       EventOrderPlaced,
	"placed":             EventOrderPlaced,
	"purchase":           EventOrderPlaced,
	"purchased":          EventOrderPlaced,
	"order":              EventOrderPlaced,
	"new_order":          EventOrderPlaced,
	"order_created":      EventOrderPlaced,
	"orders_create":      EventOrderPlaced,
	"checkout_completed": EventOrderPlaced,
	"sale":               EventOrderPlaced,

	"payment_captured":  EventPaymentCaptured,
	"captured":          EventPaymentCaptured,
	"capture":           EventPaymentCaptured,
	"payment":           EventPaymentCaptured,
	"payment_capture":   EventPaymentCaptured,
	"payment_received":  EventPaymentCaptured,
	"payment_succeeded": EventPaymentCaptured,
	"paid":              EventPaymentCaptured,
	"order_paid":        EventPaymentCaptured,
	"orders_paid":       EventPaymentCaptured,
	"charge":            EventPaymentCaptured,
	"charged":           EventPaymentCaptured,

	"refund":         EventRefund,
	"refunded":       EventRefund,
	"order_refunded": EventRefund,
	"refund_created": EventRefund,
	"refunds_create": EventRefund,

	"cancel":           EventCancel,
	"cancelled":        EventCancel,
	"canceled":         EventCancel,
	"cancellation":     EventCancel,
	"order_cancelled":  EventCancel,
	"order_canceled":   EventCancel,
	"orders_cancelled": EventCancel,
	"void":             EventCancel,
	"voided":           EventCancel,
}

var channelAliases = map[string]string{
	"web":        ChannelWeb,
	"online":     ChannelWeb,
	"website":    ChannelWeb,
	"www":        ChannelWeb,
	"desktop":    ChannelWeb,
	"browser":    ChannelWeb,
	"webshop":    ChannelWeb,
	"ecommerce":  ChannelWeb,
	"e_commerce": ChannelWeb,

	"app":        ChannelApp,
	"mobile":     ChannelApp,
	"mobile_app": ChannelApp,
	"in_app":     ChannelApp,
	"ios":        ChannelApp,
	"android":    ChannelApp,
	"iphone":     ChannelApp,
	"ipad":       ChannelApp,

	"pos":           ChannelPOS,
	"store":         ChannelPOS,
	"in_store":      ChannelPOS,
	"instore":       ChannelPOS,
	"retail":        ChannelPOS,
	"shop":          ChannelPOS,
	"point_of_sale": ChannelPOS,
	"terminal":      ChannelPOS,
}

// normaliseName writes the lookup form of b into buf (see the aliases) and
// returns it; ok is false if it does not fit.
func normaliseName(b []byte, buf *[32]byte, splitCamel bool) ([]byte, bool) {
	n := 0
	prevLower := false
	for _, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			if prevLower && splitCamel {
				if n == len(buf) {
					return nil, false
				}
				buf[n] = '_'
				n++
			}
			c += 32
			prevLower = false
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
			prevLower = true
		case c == '-' || c == ' ' || c == '.' || c == '/' || c == '_':
			c = '_'
			prevLower = false
		default:
			return nil, false
		}
		if n == len(buf) {
			return nil, false
		}
		buf[n] = c
		n++
	}
	return buf[:n], true
}

func lookupAlias(table map[string]string, b []byte) (string, bool) {
	var buf [32]byte
	key, ok := normaliseName(b, &buf, false)
	if !ok {
		return "", false
	}
	if v, ok := table[string(key)]; ok {
		return v, true
	}
	// "orderPlaced", but only after "iOS" had its chance as "ios".
	key, _ = normaliseName(b, &buf, true)
	v, ok := table[string(key)]
	return v, ok
}
