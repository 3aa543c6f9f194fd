package wal

import (
	"strings"
	"testing"
)

// TestValidTopic checks Kafka's topic name rule at its edges: the length
// limits, the names "." and "..", and characters outside a-z A-Z 0-9 . _ -.
func TestValidTopic(t *testing.T) {
	for _, tc := range []struct {
		name  string
		topic string
		want  bool
	}{
		{"empty", "", false},
		{"one char", "a", true},
		{"dot", ".", false},
		{"dot dot", "..", false},
		{"three dots", "...", true},
		{"leading dot", ".orders", true},
		{"all classes", "Shop_orders-EU.v2", true},
		{"249 chars", strings.Repeat("a", 249), true},
		{"250 chars", strings.Repeat("a", 250), false},
		{"slash", "orders/eu", false},
		{"space", "orders eu", false},
		{"colon", "orders:eu", false},
		{"NUL", "orders\x00", false},
		{"non-ASCII", "bestellungen-ä", false},
	} {
		if got := ValidTopic(tc.topic); got != tc.want {
			t.Errorf("%s: ValidTopic(%q) = %v, want %v", tc.name, tc.topic, got, tc.want)
		}
	}
}
