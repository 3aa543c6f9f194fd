package appliance

import (
	"context"
	"log/slog"
	"maps"
	"os"
	"strings"

	"github.com/offload/offload/engine"
	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/loader"
	"github.com/offload/offload/wal"
)

// reloader applies SIGHUP: it reads the configuration file again and
// applies what can change while running, saying what it could not.
type reloader struct {
	path  string         // the configuration file; empty: nothing to reload
	level *slog.LevelVar // nil: log.level is not reloadable
	cur   *config.Config // what is in effect
	w     *wal.WAL
	eng   *engine.Engine
	ld    *loader.Loader // nil without a warehouse
	log   *slog.Logger
}

// reloadable are the options SIGHUP applies; topics.NAME.filters too.
var reloadable = map[string]bool{
	"log.level": true, "engine.rates_file": true, "engine.reference_file": true, "engine.base_currency": true,
	"outbox.seal_rows": true, "outbox.seal_bytes": true, "outbox.seal_age": true,
	"loader.shipping_windows": true, "loader.uplink_rate": true,
}

// run reloads on every signal from hup until ctx is done.
func (r *reloader) run(ctx context.Context, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		r.reload()
	}
}

func (r *reloader) reload() {
	if r.path == "" {
		r.log.Warn("SIGHUP: this run has no configuration file to reload")
		return
	}
	next, err := config.Load(r.path, os.Environ())
	if err != nil {
		r.log.Error("SIGHUP: the configuration does not load; nothing reloaded", "err", err)
		return
	}
	var applied, refused []string
	// The tables' files may have changed without the configuration.
	rates, ref, err := LoadTables(next)
	if err != nil {
		r.log.Error("SIGHUP: tables not reloaded; the previous ones stay in use", "err", err)
	} else {
		r.eng.SetTables(rates, ref)
		r.log.Info("SIGHUP: rates and reference tables reloaded; they apply from the next micro-batch",
			"rates", rates.Len(), "reference", ref.Len())
	}
	eff := *r.cur // becomes what is in effect after this reload
	eff.Topics = maps.Clone(r.cur.Topics)
	engineChanged := false
	for _, name := range config.Changed(r.cur, next) {
		topic, isFilters := strings.CutSuffix(strings.TrimPrefix(name, "topics."), ".filters")
		switch {
		case strings.HasPrefix(name, "topics.") && isFilters:
			tc := eff.Topics[topic]
			tc.Filters = next.Topics[topic].Filters
			eff.Topics[topic] = tc
			engineChanged = true
		case !reloadable[name] || (name == "log.level" && r.level == nil):
			refused = append(refused, name)
			continue
		case name == "log.level":
			_ = r.level.UnmarshalText([]byte(next.Log.Level))
			eff.Log.Level = next.Log.Level
		case strings.HasPrefix(name, "outbox."):
			eff.Outbox = next.Outbox
			engineChanged = true
		case strings.HasPrefix(name, "engine."):
			eff.Engine.RatesFile, eff.Engine.ReferenceFile, eff.Engine.BaseCurrency = next.Engine.RatesFile, next.Engine.ReferenceFile, next.Engine.BaseCurrency
		case strings.HasPrefix(name, "loader."):
			eff.Loader.ShippingWindows, eff.Loader.UplinkRate = next.Loader.ShippingWindows, next.Loader.UplinkRate
			if r.ld != nil {
				windows, _ := shippingWindows(eff.Loader.ShippingWindows) // validated by config
				r.ld.SetPolicy(windows, int64(eff.Loader.UplinkRate))
			}
		}
		applied = append(applied, name)
	}
	if engineChanged {
		opts, err := EngineOptions(&eff, r.w, r.log)
		if err == nil {
			err = r.eng.Reconfigure(opts.Topics, opts.Seal)
		}
		if err != nil {
			r.log.Error("SIGHUP: filter rules and seal policy not reloaded", "err", err)
			return
		}
	}
	r.cur = &eff
	r.log.Info("SIGHUP: configuration reloaded", "applied", applied, "not_reloaded_restart_needed", refused)
}
