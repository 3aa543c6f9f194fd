package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/offload/offload/internal/appliance"
	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/internal/preflight"
	"github.com/offload/offload/loader"
)

// kafkaCheckTimeout bounds the Kafka checks, so that unreachable brokers
// leave time for the warehouse's.
const kafkaCheckTimeout = 30 * time.Second

// checkJSON is one result as `offload check --json` prints it.
type checkJSON struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
	Fix    string `json:"fix,omitempty"`
}

// runCheck is the preflight: it proves, without touching the warehouse's
// production tables or Kafka's offsets, that a configuration works on this
// machine (docs/OPERATIONS.md), one line per check; it exits 0 when all
// pass and 1 otherwise, so it can be the unit's ExecStartPre.
func runCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", stderr)
	path := fs.String("config", "", "configuration file (YAML); OFFLOAD_* variables override it")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	timeout := fs.Duration("timeout", 3*time.Minute, "bound on all the checks")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usageError{errors.New("--config FILE is required")}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	results := checkAll(ctx, *path)
	failed := 0
	for _, r := range results {
		if !r.OK {
			failed++
		}
	}
	if *asJSON {
		out := struct {
			OK     bool        `json:"ok"`
			Checks []checkJSON `json:"checks"`
		}{OK: failed == 0, Checks: []checkJSON{}}
		for _, r := range results {
			out.Checks = append(out.Checks, checkJSON(r))
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			if r.OK {
				fmt.Fprintf(stdout, "OK   %s\n", r.Name)
				continue
			}
			fmt.Fprintf(stdout, "FAIL %s\n       %s\n       fix: %s\n", r.Name, r.Detail, r.Fix)
		}
		fmt.Fprintf(stdout, "offload check: %d passed, %d failed\n", len(results)-failed, failed)
	}
	if failed > 0 {
		return errFound
	}
	return nil
}

// checkAll runs the checks of the configuration at path: the file, the
// local machine, Kafka, then the warehouse.
func checkAll(ctx context.Context, path string) []loader.CheckResult {
	c, err := config.Load(path, os.Environ())
	if err != nil {
		return []loader.CheckResult{{Name: "config: " + path, Detail: err.Error(), Fix: "correct the options named (offload validate --config " + path + ")"}}
	}
	out := []loader.CheckResult{{Name: "config: " + path + " valid", OK: true}}
	out = append(out, preflight.DataDir(c.DataDir, int64(c.DiskBudget))...)
	out = append(out, checkTables(c), checkHashKey(c), preflight.AdminListen(c.Admin.Listen))

	kctx, cancel := context.WithTimeout(ctx, kafkaCheckTimeout)
	out = append(out, preflight.Kafka(kctx, preflight.KafkaOptions{
		Brokers: c.Kafka.Brokers, Topics: c.Kafka.Topics, Group: c.Kafka.Group, ClientID: c.Kafka.ClientID,
		TLS: appliance.KafkaTLS(c), SASL: appliance.KafkaSASL(c),
	})...)
	cancel()

	if c.Warehouse.Type == "" {
		return append(out, loader.CheckResult{Name: "warehouse: none configured (warehouse.type): sealed batches stay in the outbox", OK: true})
	}
	var sink loader.Sink
	sink, err = appliance.NewSink(c, quietLogger())
	if err != nil {
		return append(out, loader.CheckResult{Name: "warehouse: " + c.Warehouse.Type + " settings", Detail: err.Error(), Fix: "correct the options named"})
	}
	defer sink.Close()
	checker, ok := sink.(loader.Checker)
	if !ok {
		return append(out, loader.CheckResult{Name: "warehouse: " + c.Warehouse.Type,
			Detail: "this warehouse type has no preflight checks", Fix: "start offload and watch its loader in offload top"})
	}
	return append(out, checker.Check(ctx)...)
}

// checkTables checks that the rates and reference files parse, as the
// engine loads them at start.
func checkTables(c *config.Config) loader.CheckResult {
	name := "local: engine.rates_file and engine.reference_file parse"
	if c.Engine.RatesFile == "" && c.Engine.ReferenceFile == "" {
		return loader.CheckResult{Name: "local: no rates or reference file configured", OK: true}
	}
	if _, _, err := appliance.LoadTables(c); err != nil {
		return loader.CheckResult{Name: name, Detail: err.Error(), Fix: "correct the file, or the option naming it (docs/CONFIG.md)"}
	}
	return loader.CheckResult{Name: name, OK: true}
}

// checkHashKey checks that the e-mail hash key can be read, without
// generating one: a first start does that.
func checkHashKey(c *config.Config) loader.CheckResult {
	k, err := appliance.StoredHashKey(c)
	switch {
	case err != nil:
		return loader.CheckResult{Name: "local: e-mail hash key", Detail: err.Error(),
			Fix: "give the service user read access to " + appliance.HashKeyPath(c.DataDir) + ", restore it from a backup, or set engine.hash_key_file"}
	case k == nil:
		return loader.CheckResult{Name: "local: e-mail hash key (none yet: offload run generates " + appliance.HashKeyPath(c.DataDir) + ")", OK: true}
	case c.Engine.HashKey != "":
		return loader.CheckResult{Name: "local: e-mail hash key readable (engine.hash_key_file)", OK: true}
	}
	return loader.CheckResult{Name: "local: e-mail hash key readable (" + appliance.HashKeyPath(c.DataDir) + ")", OK: true}
}
