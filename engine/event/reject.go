package event

// Reject says why a record goes to the dead-letter table. Code is one of the
// stable Code* constants (counted and alerted on; never renamed), Field the
// canonical field concerned ("" for the record as a whole; "items.qty" for
// an item's sub-field), Reason a sentence for the operator that names the
// source field when the mapping renames it. Reasons never carry an e-mail
// address or a full card number.
type Reject struct {
	Code   string
	Reason string
	Field  string
}

// Reject codes. The package doc lists their meanings; the strings are part
// of the dead-letter table's contract and must never change.
const (
	CodeEmptyRecord        = "empty_record"
	CodeOversized          = "oversized"
	CodeInvalidUTF8        = "invalid_utf8"
	CodeInvalidJSON        = "invalid_json"
	CodeNotAnObject        = "not_an_object"
	CodeDuplicateField     = "duplicate_field"
	CodeCSVSyntax          = "csv_syntax"
	CodeCSVColumnCount     = "csv_column_count"
	CodeMissingField       = "missing_field"
	CodeWrongType          = "wrong_type"
	CodeFieldTooLong       = "field_too_long"
	CodeControlCharacter   = "control_character"
	CodeBadEventType       = "bad_event_type"
	CodeBadEmail           = "bad_email"
	CodeBadAmount          = "bad_amount"
	CodeAmountPrecision    = "amount_precision"
	CodeAmountOutOfRange   = "amount_out_of_range"
	CodeUnknownCurrency    = "unknown_currency"
	CodeBadCardNumber      = "bad_card_number"
	CodeBadChannel         = "bad_channel"
	CodeBadCountry         = "bad_country"
	CodeBadItems           = "bad_items"
	CodeBadQuantity        = "bad_quantity"
	CodeBadPrice           = "bad_price"
	CodeBadTimestamp       = "bad_timestamp"
	CodeFutureTimestamp    = "future_timestamp"
	CodeAncientTimestamp   = "ancient_timestamp"
	CodeBaseAmountOverflow = "base_amount_overflow"
	CodeBadExtraColumn     = "bad_extra_column"
)

// Codes lists every reject code, in the order of the package doc.
func Codes() []string {
	return []string{
		CodeEmptyRecord, CodeOversized, CodeInvalidUTF8, CodeInvalidJSON,
		CodeNotAnObject, CodeDuplicateField, CodeCSVSyntax, CodeCSVColumnCount,
		CodeMissingField, CodeWrongType, CodeFieldTooLong, CodeControlCharacter,
		CodeBadEventType, CodeBadEmail, CodeBadAmount, CodeAmountPrecision,
		CodeAmountOutOfRange, CodeUnknownCurrency, CodeBadCardNumber,
		CodeBadChannel, CodeBadCountry, CodeBadItems, CodeBadQuantity,
		CodeBadPrice, CodeBadTimestamp, CodeFutureTimestamp,
		CodeAncientTimestamp, CodeBaseAmountOverflow, CodeBadExtraColumn,
	}
}

// Verdict is what Decode decided for one record.
type Verdict uint8

const (
	// Accepted: the Event is clean, valid, masked and enriched.
	Accepted Verdict = iota + 1
	// Filtered: a configured Rule matched; the record is counted per rule
	// and not kept.
	Filtered
	// Rejected: the record goes to the dead-letter table with the Reject.
	Rejected
)

// String returns "accepted", "filtered" or "rejected".
func (v Verdict) String() string {
	switch v {
	case Accepted:
		return "accepted"
	case Filtered:
		return "filtered"
	case Rejected:
		return "rejected"
	}
	return "invalid"
}

// Result is Decode's outcome.
type Result struct {
	Verdict Verdict
	// Rule is the index in Config.Filters of the rule that matched, when
	// Verdict is Filtered; -1 otherwise.
	Rule int
	// Reject is set when Verdict is Rejected.
	Reject Reject
}
