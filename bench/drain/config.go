package drain

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// PasswordEnv carries the warehouse password to the appliance: a secret
// never goes into the configuration file (docs/CONFIG.md).
const PasswordEnv = "OFFLOAD_WAREHOUSE_PASSWORD"

// SealAge is the outbox's seal age in the benchmark's configuration. The
// default (5 minutes, sized for warehouse cost) would make the last batch
// of a drain, and every steady-phase latency, wait for it; everything
// else is left at the defaults a user gets.
const SealAge = "2s"

// applianceConfig is what the configuration file names.
type applianceConfig struct {
	dataDir, topic, adminAddr string
	brokers                   []string
	warehouse                 string // the warehouse section (snowtest.Server.WarehouseYAML)
}

// write writes the configuration as YAML to path (mode 0600).
func (c applianceConfig) write(path string) error {
	q := strconv.Quote
	brokers := make([]string, len(c.brokers))
	for i, b := range c.brokers {
		brokers[i] = q(b)
	}
	body := fmt.Sprintf(`# offload bench --profile drain: the defaults a user gets, but a short seal age.
appliance_id: bench-drain
data_dir: %s
kafka:
  brokers: [%s]
  topics: [%s]
  group: %s
outbox:
  seal_age: %s
admin:
  listen: %s
`, q(c.dataDir), strings.Join(brokers, ", "), q(c.topic), q(c.topic), SealAge, q(c.adminAddr)) + c.warehouse
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		return fmt.Errorf("cannot write the appliance's configuration: %w", err)
	}
	return nil
}
