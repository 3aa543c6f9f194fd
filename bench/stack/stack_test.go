package stack

import (
	"testing"
	"time"

	"github.com/offload/offload/internal/config"
)

// TestStack: a stack with the in-process Kafka and the Snowflake-protocol
// server hands out a valid configuration that reaches both, switches the
// warehouse down and up, and does not take the empty warehouse for
// loaded.
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
	if s.WaitLoaded(1, 300*time.Millisecond) {
		t.Fatal("an empty warehouse holds an event")
	}
}
