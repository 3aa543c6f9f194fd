// Package event turns one raw Kafka record into the canonical transaction
// event: it decodes, maps, filters, cleans, validates, masks and enriches a
// single record, and says why when it cannot.
//
// The package owns the canonical Event, the per-topic Mapping, the reject
// codes and every rule below. It must not do I/O other than loading the
// rates and reference CSV tables (LoadRates, LoadReference), must not know
// about DuckDB, Kafka or the WAL, and must build without cgo: the engine
// calls it per record inside its micro-batch and owns dedupe, windows and
// storage.
//
// # Use
//
//	d, err := event.NewDecoder(cfg)     // one per goroutine
//	var ev event.Event
//	res := d.Decode(raw, &ev)           // reuses ev.Items and d's buffers
//	switch res.Verdict {
//	case event.Accepted: // ev is clean
//	case event.Filtered: // count cfg.Filters[res.Rule].Name
//	case event.Rejected: // dead-letter raw (through MaskRaw) with res.Reject
//	}
//
// A Decoder keeps a fastjson parser and scratch buffers, so steady-state
// Decode allocates nothing per record; an Event's strings are carved from
// 16 KiB blocks that are never rewritten, so they stay valid after later
// calls (a kept string keeps its block alive).
//
// # Order of the steps
//
//  1. Record: larger than max_record_bytes is oversized; empty or only
//     whitespace is empty_record; not UTF-8 is invalid_utf8.
//  2. Decode and map: JSON is parsed (invalid_json, not_an_object) and the
//     mapped paths are looked up; CSV is split (csv_syntax,
//     csv_column_count). A mapped key that appears twice in one object is
//     duplicate_field (parsers disagree on which copy wins, so the record is
//     ambiguous); duplicates of keys the mapping does not read are ignored,
//     like everything else the mapping does not read. A mapped path that
//     meets a non-object on the way is wrong_type.
//  3. Filter: Config.Filters run on the trimmed raw values of the mapped
//     fields, before any cleaning or validation, so a heartbeat whose
//     event_type is not a valid type is filtered, not rejected.
//  4. Required fields: absent, JSON null and "" (after trimming) are all
//     absent (missing_field).
//  5. Clean and validate each field, in the canonical order event_id,
//     order_id, event_type, store_id, customer_id, customer_email, amount,
//     currency, payment_method, card_number, channel, country, items,
//     event_time; the first failure is the reject. Masking happens as each
//     string is cleaned.
//  6. Enrich: base amount and reference data.
//
// JSON parsing is structural: a broken record (truncated, missing comma or
// brace, bad literal) is invalid_json, but the lexical form of values the
// mapping does not read is not checked (a malformed number in an unmapped
// key passes; it is dropped anyway). Every value that is read is checked
// strictly by its own rules below. Where text belongs, a JSON number is
// taken as its text (event_id 123 is "123"); a boolean, object or array is
// wrong_type.
//
// # Mapping
//
// Mapping.Fields maps canonical field names to source keys: a dotted path
// into nested JSON objects ("customer.email"), and for the item sub-fields
// (items.sku, items.qty, items.unit_price) a path inside each element of
// the items array. A field left out is read from the key of its own name;
// "-" means the topic has no such field. For CSV, each Kafka record is one
// CSV line (RFC 4180 quoting; a quoted field may hold the delimiter, ""
// and line breaks; one trailing line end is dropped) whose columns are
// named by Mapping.Columns or by splitting Mapping.HeaderLine; Fields then
// maps to column names.
//
// Items can also be one text value, which is how CSV carries them:
//
//	sku:qty:unit_price|sku:qty:unit_price      e.g. "TEE-M:2:19.95|CAP:1:20"
//
// Each entry has exactly three ':'-separated parts (so a SKU cannot contain
// ':' or '|'), spaces around parts are trimmed, "" means no items, and an
// empty entry (a leading, trailing or doubled '|') is bad_items.
//
// # Cleaning and validation rules
//
// Strings are trimmed (Unicode white space); at most 256 bytes remain
// (field_too_long) and no control character U+0000-U+001F or U+007F
// (control_character).
//
// event_type is normalised (lower-cased; '-', ' ', '.', '/' become '_';
// then camelCase split) and looked up in an alias table: "ORDER-PLACED",
// "placed", "purchase", "orders/create" → order_placed; "captured", "paid"
// → payment_captured; "refunded" → refund; "cancelled", "void" → cancel.
// channel likewise: "online", "website" → web; "mobile", "ios", "android"
// → app; "store", "in_store", "retail" → pos. Anything else is
// bad_event_type or bad_channel. See alias.go for the tables.
//
// currency must be in the embedded ISO 4217 list (iso4217.txt: List One
// less XTS and XXX), any letter case, stored upper-case (unknown_currency).
// country must be an ISO 3166-1 alpha-2 code (iso3166.txt), upper-cased;
// "UK" is read as GB (bad_country).
//
// customer_email must look like local@domain.tld (one '@', no spaces, a
// domain of at least two non-empty labels, at most 254 bytes): bad_email.
// card_number may have any layout ("4111 1111 1111 1111", "**** 4242") with
// 1 to 19 digits (bad_card_number); only its last four digits are kept.
//
// Amounts (amount, items' unit_price) are exact decimals in Decimal (4
// places), never float64:
//
//   - A JSON number: plain decimal syntax, exponent allowed (1.5e2).
//   - A string: the same, trimmed, and comma thousands separators in strict
//     groups of three ("1,234.50", "1,234,567"). Any other comma ("12,50",
//     "1,23,456") is bad_amount: dropping it would misread a decimal comma
//     by a factor of 1000.
//   - Currency symbols or codes inside the amount ("€12.50", "12.50 EUR"),
//     spaces, NaN, Infinity, hex: bad_amount. "$" names a dozen
//     currencies; the currency field is the one authority.
//   - More than 4 decimal places are amount_precision unless the extra
//     places are zeros ("1.23450" is fine).
//   - amount must lie in [min_amount, max_amount] (default [0, 10^12]):
//     amount_out_of_range, also for values past the fixed-point range.
//     Refunds carry a positive amount; event_type gives the sign, so a
//     negative amount is out of range by default.
//   - An amount needs a currency, required or not (missing_field).
//   - For items, every price problem is bad_price, and a price must lie in
//     [0, max_amount].
//
// Items: a JSON array of objects (or the text form above), at most
// max_items (default 1000) entries (bad_items); each has a sku (bad_items
// when absent), a qty that is a whole number from 1 to 10000 ("2", 2 and
// 2.0 are fine; bad_quantity), and a unit_price (bad_price).
//
// event_time accepts:
//
//   - ISO 8601 / RFC 3339: YYYY-MM-DD, then 'T', 't' or a space, then
//     hh:mm, optionally :ss and a fraction after '.' or ',' (digits past
//     nanoseconds are dropped), then a zone: none (UTC), 'Z'/'z', "UTC", or
//     an offset ±hh, ±hhmm or ±hh:mm, optionally after one space. A date
//     without a time, week or ordinal dates, the basic format
//     (20240501T1230Z) and zone names (PST) are bad_timestamp.
//   - Epoch numbers, as JSON numbers or digit strings, optionally negative.
//     The unit is told by magnitude: |n| < 10^11 is seconds (10^11 s is the
//     year 5138; a fraction is allowed, "1714566600.25"), < 10^14
//     milliseconds, < 10^17 microseconds, otherwise nanoseconds. Since no
//     time before 2000 is accepted, no valid seconds value can be confused
//     with milliseconds (2000-01-01 is 9.5×10^8 s but 9.5×10^11 ms). An
//     exponent (1.7e9) is bad_timestamp.
//
// The time is stored in UTC and must not be before 2000-01-01
// (ancient_timestamp) nor after Now + max_future_skew (default 24h;
// future_timestamp).
//
// # Masking
//
// The e-mail address is replaced by CustomerEmailHash, the lower-case hex
// HMAC-SHA256 under Config.HashKey of the trimmed, lower-cased address.
// E-mail-shaped tokens inside other kept fields (e.g. a customer_id that is
// an address) are replaced by the same hash, so they still join.
//
// A card number is a span of 13 to 19 digits that passes the Luhn check,
// does not start with 0 or 1, and may have up to three spaces or dashes
// between digits (mask.go states the rule exactly; epoch milliseconds start
// with 1, which is why 1 is excluded). In every kept text field it is
// replaced by "****" and its last four digits; in the identifier fields
// (event_id, order_id, store_id, customer_id, items' sku) a keyed token
// follows ("****1111#" and 24 letters a-p from the HMAC of the digits), so
// different ids stay different and one id always maps to the same value:
// dedupe and joins keep working. A single unseparated digit group longer
// than 19 digits (a long numeric id) is not a card number. Reject reasons
// never echo an e-mail address or card number. MaskRaw applies the card
// rule to raw bytes for the dead-letter table (e-mail addresses stay in
// the local dead-letter table and are never shipped).
//
// # Enrichment
//
// With Config.Rates, BaseAmount = Amount × rate (units of the base currency
// per unit of the event's currency, up to 10 decimal places), rounded half
// to even to 4 places. A currency the table lacks is not a reject: the
// event is kept with HasBaseAmount false (NULL, counted by the engine),
// because the currency itself was valid and the table is what is
// incomplete. A base amount past the fixed-point range is
// base_amount_overflow. With Config.Reference, the row whose key equals the
// event's key field (the table's first column, usually store_id) fills
// Region and Timezone; HasReference says whether one was found.
//
// # Reject codes
//
// Stable snake_case strings (Code* constants); never renamed.
//
//	empty_record          the record is empty or only white space
//	oversized             the record is larger than max_record_bytes
//	invalid_utf8          the record is not valid UTF-8
//	invalid_json          the record is not well-formed JSON
//	not_an_object         the JSON record is not an object
//	duplicate_field       a key the mapping reads appears twice in one object
//	csv_syntax            bad CSV quoting, or a line break outside quotes
//	csv_column_count      the CSV record's column count differs from the mapping's
//	missing_field         a required field is absent, null or empty (or an amount has no currency)
//	wrong_type            a boolean, object or array where a scalar belongs, or a
//	                      non-object on a mapped path, or items neither an array nor text
//	field_too_long        a text field is longer than 256 bytes after trimming
//	control_character     a text field holds a control character
//	bad_event_type        event_type is none of the types or their aliases
//	bad_email             customer_email is not shaped like an address
//	bad_amount            amount is not a plain decimal number
//	amount_precision      amount has more than 4 non-zero decimal places
//	amount_out_of_range   amount is outside [min_amount, max_amount] or the fixed point
//	unknown_currency      currency is not in the ISO 4217 list
//	bad_card_number       card_number has no digits or more than 19
//	bad_channel           channel is none of web, app, pos or their aliases
//	bad_country           country is not an ISO 3166-1 alpha-2 code
//	bad_items             items: too many, an entry that is not an object or
//	                      not sku:qty:unit_price, or an item without sku
//	bad_quantity          an item's qty is absent or not a whole number in 1..10000
//	bad_price             an item's unit_price is absent, malformed, too precise or out of range
//	bad_timestamp         event_time is in none of the accepted forms
//	future_timestamp      event_time is after Now + max_future_skew
//	ancient_timestamp     event_time is before 2000-01-01
//	base_amount_overflow  the amount converted to the base currency overflows
//	bad_extra_column      an extra column's source value is not of its type
//	                      (field: the column's name)
package event
