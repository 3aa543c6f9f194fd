package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/offload/offload/internal/testenv"
)

// TestDataDriven runs the engine over the scripts in testdata/ (regenerate
// the expected output with -rewrite). Commands:
//
//	open [window=1m] [lateness=5m] [dedupe-window=24h] [batch=N] [seal-rows=N]
//	  (re)opens the engine with these options over the same WAL and
//	  DuckDB file; the first command of a file must be open.
//	append [topic=orders] [partition=0]
//	  appends one record per input line, as one WAL entry. A line
//	  "ev id=ID store=S amount=A time=HH:MM:SS[.fff] [type=T] [customer=C]
//	  [currency=C] [channel=C]" builds a canonical JSON event on
//	  2024-05-01; any other line is taken as the raw record.
//	step [fail=POINT] | drain
//	  runs one micro-batch / micro-batches until the WAL is drained;
//	  prints the records consumed. With fail, the hook point POINT fails
//	  (keys: after the DuckDB commit, before the dedupe key store).
//	keys
//	  prints the dedupe key store: its slices (start, keys), the keys
//	  held at or after the horizon and the event time they span.
//	restart
//	  closes and reopens the engine with the same options.
//	seal
//	  seals the open outbox batch.
//	rows [full] | windows | live | dlq | counters | batches
//	  prints the outbox rows (full: the other columns), the emitted windows, the live window state,
//	  the dead letters, the non-zero counters with watermark and dedupe
//	  keys, or the sealed batches.
func TestDataDriven(t *testing.T) {
	testenv.RunFiles(t, "testdata/*.txt", func(t *testing.T, path string) {
		var h *harness
		var mutate func(*Options)
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			if td.Cmd != "open" && h == nil {
				td.Fatalf(t, "open first")
			}
			switch td.Cmd {
			case "open":
				mutate = ddOptions(t, td)
				if h == nil {
					h = newHarness(t, mutate)
				} else {
					h.close()
					h.mutate = mutate
					h.open()
				}
				return "ok\n"
			case "append":
				topic, partition := "orders", 0
				if td.HasArg("topic") {
					td.ScanArgs(t, "topic", &topic)
				}
				if td.HasArg("partition") {
					td.ScanArgs(t, "partition", &partition)
				}
				var recs []string
				for _, line := range strings.Split(td.Input, "\n") {
					if line == "" {
						continue
					}
					recs = append(recs, ddRecord(t, td, line))
				}
				first := h.add(topic, int32(partition), recs...)
				return fmt.Sprintf("offsets %d-%d\n", first, first+int64(len(recs))-1)
			case "step":
				if !td.HasArg("fail") {
					return fmt.Sprintf("consumed %d\n", h.step())
				}
				var point string
				td.ScanArgs(t, "fail", &point)
				h.failAt(point, errors.New("injected"))
				defer func() { h.e.hook = nil }()
				_, err := h.e.Step(context.Background())
				return fmt.Sprintf("error: %v\n", err)
			case "keys":
				var out []string
				for _, sl := range h.e.keys.slices {
					out = append(out, fmt.Sprintf("slice %s keys=%d", time.UnixMicro(sl.start).UTC().Format("15:04"), sl.keys))
				}
				st := h.e.Stats()
				out = append(out, fmt.Sprintf("held=%d span=%s live=%d", st.DedupeKeys, st.DedupeHeld, len(h.keys())))
				return lines(out)
			case "drain":
				return fmt.Sprintf("consumed %d\n", h.drain())
			case "restart":
				h.reopen()
				return "ok\n"
			case "seal":
				if err := h.e.SealNow(); err != nil {
					return err.Error() + "\n"
				}
				return "ok\n"
			case "rows":
				if td.HasArg("full") {
					return lines(h.rows(`SELECT event_id, coalesce(order_id, '-'), coalesce(customer_id, '-'),
						coalesce(left(customer_email_hash, 8), '-'), coalesce(payment_method, '-'), coalesce(card_last4, '-'),
						coalesce(channel, '-'), coalesce(country, '-'), coalesce(items, '-'), coalesce(base_amount::VARCHAR, '-'),
						coalesce(region, '-'), coalesce(timezone, '-') FROM outbox_rows
						ORDER BY source_topic, source_partition, source_offset`))
				}
				return lines(h.rows(`SELECT source_topic || '/' || source_partition || '/' || source_offset, event_id, event_type,
					store_id, amount, currency, event_time, coalesce(batch_id, '-') FROM outbox_rows
					ORDER BY source_topic, source_partition, source_offset`))
			case "windows":
				return lines(h.rows(`SELECT store_id, currency, event_type, channel, strftime(window_start, '%H:%M'),
					'count=' || count, 'sum=' || sum_amount, 'base=' || sum_base_amount || '/' || base_count,
					'min=' || min_amount, 'max=' || max_amount, 'customers=' || distinct_customers, 'v' || version,
					coalesce(batch_id, '-') FROM outbox_windows ORDER BY window_start, store_id, currency, event_type, channel, version`))
			case "live":
				return lines(h.rows(`SELECT store_id, currency, event_type, channel, strftime(window_start, '%H:%M'),
					'count=' || count, 'v' || version, CASE WHEN dirty THEN 'dirty' ELSE 'clean' END
					FROM windows ORDER BY window_start, store_id, currency, event_type, channel`))
			case "dlq":
				return lines(h.rows(`SELECT id, topic || '/' || "partition" || '/' || "offset", stage, code,
					coalesce(field, '-'), reason FROM dlq ORDER BY id`))
			case "counters":
				return ddCounters(h)
			case "batches":
				bs, err := h.e.SealedBatches()
				if err != nil {
					return err.Error() + "\n"
				}
				var out []string
				for _, b := range bs {
					var rs []string
					for _, r := range b.Ranges {
						rs = append(rs, fmt.Sprintf("%s/%d:%d-%d", r.Topic, r.Partition, r.First, r.Last))
					}
					out = append(out, fmt.Sprintf("%s rows=%d window_rows=%d bytes=%d %s %s", b.ID, b.Rows, b.WindowRows, b.Bytes, strings.Join(rs, ","), b.State))
				}
				return lines(out)
			}
			td.Fatalf(t, "unknown command %q", td.Cmd)
			return ""
		})
	})
}

func lines(ls []string) string {
	if len(ls) == 0 {
		return "(none)\n"
	}
	return strings.Join(ls, "\n") + "\n"
}

func ddOptions(t *testing.T, td *datadriven.TestData) func(*Options) {
	var set []func(*Options)
	dur := func(v string) time.Duration {
		d, err := time.ParseDuration(v)
		if err != nil {
			td.Fatalf(t, "%v", err)
		}
		return d
	}
	num := func(v string) int64 {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			td.Fatalf(t, "%v", err)
		}
		return n
	}
	for _, a := range td.CmdArgs {
		v := ""
		if len(a.Vals) > 0 {
			v = a.Vals[0]
		}
		switch a.Key {
		case "window":
			d := dur(v)
			set = append(set, func(o *Options) { o.Window.Size = d })
		case "lateness":
			d := dur(v)
			set = append(set, func(o *Options) { o.Window.Lateness = d })
		case "dedupe-window":
			d := dur(v)
			set = append(set, func(o *Options) { o.DedupeWindow = d })
		case "batch":
			n := num(v)
			set = append(set, func(o *Options) { o.BatchRecords = int(n) })
		case "seal-rows":
			n := num(v)
			set = append(set, func(o *Options) { o.Seal.Rows = n })
		default:
			td.Fatalf(t, "unknown option %q", a.Key)
		}
	}
	return func(o *Options) {
		for _, f := range set {
			f(o)
		}
	}
}

// ddRecord turns an "ev k=v ..." line into a canonical JSON event.
func ddRecord(t *testing.T, td *datadriven.TestData, line string) string {
	if !strings.HasPrefix(line, "ev ") {
		return line
	}
	kv := map[string]string{}
	for _, f := range strings.Fields(line[3:]) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			td.Fatalf(t, "bad field %q in %q", f, line)
		}
		kv[k] = v
	}
	tm, err := time.Parse("15:04:05.999999999", kv["time"])
	if err != nil {
		td.Fatalf(t, "time: %v", err)
	}
	when := t0.Add(tm.Sub(time.Date(0, 1, 1, 12, 0, 0, 0, time.UTC)))
	var extra []any
	for k, field := range map[string]string{"type": "event_type", "customer": "customer_id", "currency": "currency", "channel": "channel"} {
		if v, ok := kv[k]; ok {
			extra = append(extra, field, v)
		}
	}
	// Deterministic order of the extra fields does not matter: ev marshals a map.
	return ev(kv["id"], kv["store"], kv["amount"], when, extra...)
}

func ddCounters(h *harness) string {
	st := h.e.Stats()
	var out []string
	for name, v := range h.e.counters {
		if v != 0 {
			out = append(out, fmt.Sprintf("%s=%d", name, v))
		}
	}
	sort.Strings(out)
	wm := "-"
	if !st.MaxEventTime.IsZero() {
		wm = st.Watermark.Format("15:04:05.999")
	}
	out = append(out, fmt.Sprintf("watermark=%s dedupe_keys=%d windows=%d open_rows=%d", wm, st.DedupeKeys, st.Windows, st.OutboxRowsPending))
	return strings.Join(out, "\n") + "\n"
}
