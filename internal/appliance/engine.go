package appliance

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/offload/offload/engine"
	"github.com/offload/offload/engine/event"
	"github.com/offload/offload/engine/window"
	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/wal"
)

// StoredHashKey returns the configured e-mail hash key, or the one kept in
// the data directory; nil without an error when neither exists yet.
func StoredHashKey(c *config.Config) ([]byte, error) {
	if c.Engine.HashKey != "" {
		return []byte(c.Engine.HashKey.Reveal()), nil
	}
	p := HashKeyPath(c.DataDir)
	b, err := os.ReadFile(p)
	if err == nil {
		if k := strings.TrimSpace(string(b)); len(k) >= event.MinHashKeyBytes {
			return []byte(k), nil
		}
		return nil, fmt.Errorf("engine: the hash key in %s is shorter than %d bytes; restore it from a backup or set engine.hash_key_file", p, event.MinHashKeyBytes)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("engine: cannot read the hash key: %w", err)
	}
	return nil, nil
}

// hashKey returns the configured e-mail hash key, or the one generated in
// the data directory on first start.
func hashKey(c *config.Config, log *slog.Logger) ([]byte, error) {
	if k, err := StoredHashKey(c); k != nil || err != nil {
		return k, err
	}
	p := HashKeyPath(c.DataDir)
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	k := hex.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, fmt.Errorf("engine: cannot create %s: %w", filepath.Dir(p), err)
	}
	if err := os.WriteFile(p, []byte(k+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("engine: cannot write the hash key: %w", err)
	}
	log.Warn("engine: generated the e-mail hash key; back it up with the data directory, or customer hashes change if it is lost",
		"path", p)
	return []byte(k), nil
}

// LoadTables loads the rates and reference tables named by the
// configuration (nil for a table it names none).
func LoadTables(c *config.Config) (*event.Rates, *event.Reference, error) {
	var rates *event.Rates
	var ref *event.Reference
	var err error
	if c.Engine.RatesFile != "" {
		if rates, err = event.LoadRates(c.Engine.RatesFile, c.Engine.BaseCurrency); err != nil {
			return nil, nil, fmt.Errorf("engine.rates_file: %w", err)
		}
	}
	if c.Engine.ReferenceFile != "" {
		if ref, err = event.LoadReference(c.Engine.ReferenceFile); err != nil {
			return nil, nil, fmt.Errorf("engine.reference_file: %w", err)
		}
	}
	return rates, ref, nil
}

// EngineOptions builds the engine's options from the configuration,
// generating the e-mail hash key on first start.
func EngineOptions(c *config.Config, w *wal.WAL, log *slog.Logger) (engine.Options, error) {
	key, err := hashKey(c, log)
	if err != nil {
		return engine.Options{}, err
	}
	rates, ref, err := LoadTables(c)
	if err != nil {
		return engine.Options{}, err
	}
	topics := make(map[string]event.Config, len(c.Kafka.Topics))
	for _, name := range c.Kafka.Topics {
		tc := c.Topics[name]
		tc.HashKey, tc.Rates, tc.Reference = key, rates, ref
		tc.EnsureDefaults()
		topics[name] = tc
	}
	lateness := c.Engine.Lateness.D()
	if lateness == 0 {
		lateness = window.NoLateness // zero in window.Options means its default
	}
	return engine.Options{
		Dir:         c.DataDir,
		ApplianceID: c.ApplianceID,
		WAL:         w,
		// End-to-end delivery keeps WAL entries until their load.
		KeepUntilLoaded: c.Kafka.Delivery == config.DeliveryEndToEnd,
		Topics:          topics,
		Interval:        c.Engine.Interval.D(),
		BatchRecords:    c.Engine.BatchRecords,
		MemoryLimit:     int64(c.Engine.MemoryLimit),
		Threads:         c.Engine.Threads,
		DedupeWindow:    c.Engine.DedupeWindow.D(),
		DedupeMemory:    int64(c.Engine.DedupeMemory),
		Window:          window.Options{Size: c.Engine.Window.D(), Lateness: lateness},
		Seal:            engine.SealPolicy{Rows: int64(c.Outbox.SealRows), Bytes: int64(c.Outbox.SealBytes), Age: c.Outbox.SealAge.D()},
		Logger:          log,
	}, nil
}
