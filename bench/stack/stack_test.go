package stack

import (
	"testing"

	"github.com/offload/offload/internal/config"
)

// TestStack: a stack with the in-process Kafka and the Snowflake-protocol
// server hands out a valid configuration that reaches both, switches the
// warehouse down and up, and reads its empty warehouse.
func TestStack(t *testing.T) {
	s, err := Start(t.TempDir(), Options{Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := s.Config(func(c *config.Config) { c.ApplianceID = "stack-test" })
	if err != nil {
		t.Fatal(err)
	}
	if c.ApplianceID != "stack-test" || s.Topic != "orders" || len(c.Kafka.Brokers) != 1 || c.Kafka.Brokers[0] != s.Brokers[0] ||
		c.Warehouse.Type != "snowflake" || c.Admin.Token.Reveal() != s.Token || s.Token == "" {
		t.Fatalf("configuration %+v on stack %+v", c, s)
	}
	h := s.DemoHooks()
	if !h.WarehouseUp() {
		t.Fatal("the warehouse starts down")
	}
	for _, up := range []bool{false, false, true} {
		if err := h.SetWarehouse(up); err != nil || h.WarehouseUp() != up {
			t.Fatalf("SetWarehouse(%v): %v, up %v", up, err, h.WarehouseUp())
		}
	}
	if rows, events := s.Warehouse.Loaded(); rows != 0 || events != 0 {
		t.Fatalf("a new warehouse holds %d rows, %d events", rows, events)
	}
	// Stopped before anything was produced, the warehouse has no tables.
	if v, err := s.Verify(nil); err != nil || !v.ExactlyOnce || v.Loaded != 0 {
		t.Fatalf("Verify of nothing on a warehouse without tables: %+v, %v", v, err)
	}
}
