package engine

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/offload/offload/engine/event"
	"github.com/offload/offload/wal"
)

// DLQFilter selects dead-letter rows. Zero fields select everything.
type DLQFilter struct {
	Code    string // reject code, e.g. "invalid_json"
	Topic   string
	AfterID int64 // only rows with a larger id (paging)
	// Limit bounds the rows returned; 0 means 100 for DLQList and no
	// limit for DLQExport and DLQReplay.
	Limit int
	// Pending selects only rows not replayed into the outbox yet
	// (DLQReplay always does).
	Pending bool
}

// DLQEntry is one dead-letter row.
type DLQEntry struct {
	ID         int64
	Topic      string
	Partition  int32
	Offset     int64
	KafkaTime  time.Time
	IngestTime time.Time // when the WAL made the record durable
	// Raw is the record as received, with anything that looks like a card
	// number masked (event.MaskRaw).
	Raw    []byte
	Stage  string // StageRoute, StageDecode, StageValidate or StageEnrich
	Code   string
	Field  string // canonical field, "" for the record as a whole
	Reason string
	At     time.Time
	// ReplayedAt is when a replay took the record out of the dead letters
	// (into the outbox, or counted as a duplicate or filtered); zero if
	// never. Rows are never deleted.
	ReplayedAt time.Time
	// LastReplayCode and LastReplayReason say what the last replay found:
	// the reject it still met, or "accepted", "duplicate", "filtered".
	LastReplayCode   string
	LastReplayReason string
}

const defaultDLQListLimit = 100

func (f DLQFilter) where() (string, []any) {
	conds := []string{"id > ?"}
	args := []any{f.AfterID}
	if f.Code != "" {
		conds = append(conds, "code = ?")
		args = append(args, f.Code)
	}
	if f.Topic != "" {
		conds = append(conds, "topic = ?")
		args = append(args, f.Topic)
	}
	if f.Pending {
		conds = append(conds, "replayed_at IS NULL")
	}
	return strings.Join(conds, " AND "), args
}

const dlqColumns = `id, topic, "partition", "offset", kafka_time, ingest_time, raw, stage, code, coalesce(field, ''),
	reason, "at", replayed_at, coalesce(last_replay_code, ''), coalesce(last_replay_reason, '')`

// queryDLQ calls fn for each row matching f, in id order, on q.
func queryDLQ(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, f DLQFilter, limit int, fn func(*DLQEntry) error) error {
	where, args := f.where()
	query := `SELECT ` + dlqColumns + ` FROM dlq WHERE ` + where + ` ORDER BY id`
	if limit > 0 {
		query += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	for rows.Next() {
		var d DLQEntry
		var replayed sql.NullTime
		if err := rows.Scan(&d.ID, &d.Topic, &d.Partition, &d.Offset, &d.KafkaTime, &d.IngestTime, &d.Raw, &d.Stage,
			&d.Code, &d.Field, &d.Reason, &d.At, &replayed, &d.LastReplayCode, &d.LastReplayReason); err != nil {
			rows.Close()
			return err
		}
		d.KafkaTime, d.IngestTime, d.At = d.KafkaTime.UTC(), d.IngestTime.UTC(), d.At.UTC()
		if replayed.Valid {
			d.ReplayedAt = replayed.Time.UTC()
		}
		if err := fn(&d); err != nil {
			rows.Close()
			return err
		}
	}
	return closeRows(rows)
}

// DLQList returns the dead-letter rows matching f, in id order.
func (e *Engine) DLQList(f DLQFilter) ([]DLQEntry, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = defaultDLQListLimit
	}
	var out []DLQEntry
	err := queryDLQ(context.Background(), e.db, f, limit, func(d *DLQEntry) error {
		out = append(out, *d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("engine: cannot list dead letters: %w", err)
	}
	return out, nil
}

// dlqJSON is one line of DLQExport.
type dlqJSON struct {
	ID               int64      `json:"id"`
	Topic            string     `json:"topic"`
	Partition        int32      `json:"partition"`
	Offset           int64      `json:"offset"`
	KafkaTime        time.Time  `json:"kafka_time"`
	IngestTime       time.Time  `json:"ingest_time"`
	Stage            string     `json:"stage"`
	Code             string     `json:"code"`
	Field            string     `json:"field,omitempty"`
	Reason           string     `json:"reason"`
	At               time.Time  `json:"at"`
	ReplayedAt       *time.Time `json:"replayed_at,omitempty"`
	LastReplayCode   string     `json:"last_replay_code,omitempty"`
	LastReplayReason string     `json:"last_replay_reason,omitempty"`
	Size             int        `json:"size"`
	Raw              string     `json:"raw"`     // base64 (standard, padded)
	Preview          string     `json:"preview"` // up to previewBytes, invalid UTF-8 replaced by U+FFFD
}

const previewBytes = 512

// Preview returns raw as text for people: at most previewBytes bytes, any
// invalid UTF-8 replaced by U+FFFD, "…" appended when cut.
func Preview(raw []byte) string {
	cut := len(raw) > previewBytes
	if cut {
		raw = raw[:previewBytes]
		// Do not split the last character.
		for i := 0; i < utf8.UTFMax && len(raw) > 0; i++ {
			if r, _ := utf8.DecodeLastRune(raw); r != utf8.RuneError {
				break
			}
			raw = raw[:len(raw)-1]
		}
	}
	s := strings.ToValidUTF8(string(raw), "\uFFFD")
	if cut {
		s += "…"
	}
	return s
}

// DLQExport writes the dead-letter rows matching f to w as JSON lines
// (one object per row: coordinates, stage, code, reason, the raw bytes as
// base64 and a UTF-8 preview) and returns how many it wrote.
func (e *Engine) DLQExport(w io.Writer, f DLQFilter) (int, error) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	n := 0
	err := queryDLQ(context.Background(), e.db, f, f.Limit, func(d *DLQEntry) error {
		j := dlqJSON{ID: d.ID, Topic: d.Topic, Partition: d.Partition, Offset: d.Offset, KafkaTime: d.KafkaTime,
			IngestTime: d.IngestTime, Stage: d.Stage, Code: d.Code, Field: d.Field, Reason: d.Reason, At: d.At,
			LastReplayCode: d.LastReplayCode, LastReplayReason: d.LastReplayReason, Size: len(d.Raw),
			Raw: base64.StdEncoding.EncodeToString(d.Raw), Preview: Preview(d.Raw)}
		if !d.ReplayedAt.IsZero() {
			t := d.ReplayedAt
			j.ReplayedAt = &t
		}
		if err := enc.Encode(&j); err != nil {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("engine: cannot export dead letters: %w", err)
	}
	return n, nil
}

// ReplayResult says what a DLQ replay did.
type ReplayResult struct {
	Attempted  int // rows not replayed before that matched the filter
	Accepted   int // now clean rows in the outbox
	Duplicates int // accepted, but their event id was already in the outbox
	Filtered   int // matched a filter rule of the current configuration
	// StillRejected rows stay in the dead letters as they were, with the
	// reject the replay met in last_replay_code and last_replay_reason;
	// StillRejectedByCode splits them by that code.
	StillRejected       int
	StillRejectedByCode map[string]int
}

// replayOutcome is what a replay did with one dead-letter row.
type replayOutcome struct {
	id       int64
	replayed bool
	code     string
	reason   string
}

// DLQReplay decodes the dead-letter rows matching f that were not replayed
// before, with the current configuration (mappings, rules, rates). Rows
// now accepted go through dedupe into the outbox rows and windows like
// fresh records, in the same transaction that marks them replayed; rows
// still rejected stay as they are, with the new reject noted. Rows are
// never deleted. Replays run in transactions of at most BatchRecords rows.
func (e *Engine) DLQReplay(f DLQFilter) (ReplayResult, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	res := ReplayResult{StillRejectedByCode: map[string]int{}}
	if err := e.usable(); err != nil {
		return res, err
	}
	e.applyTables()
	f.Pending = true
	left := f.Limit
	for {
		chunk := e.opts.BatchRecords
		if f.Limit > 0 {
			if left <= 0 {
				break
			}
			chunk = min(chunk, left)
		}
		var entries []DLQEntry
		err := queryDLQ(context.Background(), e.conn, f, chunk, func(d *DLQEntry) error {
			entries = append(entries, *d)
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("engine: cannot read dead letters to replay: %w", err)
		}
		if len(entries) == 0 {
			break
		}
		if err := e.replayChunk(entries, &res); err != nil {
			return res, err
		}
		f.AfterID = entries[len(entries)-1].ID
		left -= len(entries)
	}
	e.snapshotStats(0, 0)
	return res, nil
}

func (e *Engine) replayChunk(entries []DLQEntry, res *ReplayResult) error {
	b := e.newBatch()
	b.replay = true
	b.now = e.opts.Now()
	e.expireDedupe(b)
	var ev event.Event
	ids := offsetRange{first: entries[0].ID, last: entries[len(entries)-1].ID}
	var counts ReplayResult
	counts.StillRejectedByCode = map[string]int{}
	accepted := false
	for i := range entries {
		d := &entries[i]
		src := source{topic: d.Topic, partition: d.Partition, offset: d.Offset, kafkaTime: d.KafkaTime, ingestTime: d.IngestTime}
		o := replayOutcome{id: d.ID}
		dec := e.decoders[0][d.Topic]
		var res event.Result
		if dec == nil {
			res = event.Result{Verdict: event.Rejected, Rule: -1, Reject: event.Reject{Code: CodeUnknownTopic,
				Reason: fmt.Sprintf("topic %q has no mapping configured (add it under topics)", d.Topic)}}
		} else {
			res = dec.Decode(d.Raw, &ev)
		}
		switch out, rule := e.handle(b, &ev, res, lookup{}, src, d.Raw); out {
		case outAccepted:
			o.replayed, o.code, o.reason = true, "accepted", "accepted into the outbox"
			counts.Accepted++
			accepted = true
		case outDuplicate:
			o.replayed, o.code, o.reason = true, "duplicate", "accepted, but the event id is already in the outbox"
			counts.Duplicates++
		case outFiltered:
			o.replayed, o.code, o.reason = true, "filtered", "filtered by rule "+rule
			counts.Filtered++
		case outRejected:
			o.code, o.reason = res.Reject.Code, res.Reject.Reason
			counts.StillRejected++
			counts.StillRejectedByCode[res.Reject.Code]++
		}
		if o.replayed {
			b.delta[cDLQReplayed]++
		}
		b.replays = append(b.replays, o)
	}
	if accepted {
		// The batch id of the outbox batch these rows join covers the
		// dead-letter ids, so it stays unique even if no WAL record joins.
		b.offsets[wal.TopicPartition{Topic: dlqReplayTopic, Partition: -1}] = ids
	}
	e.finish(b, false)
	if err := e.commit(context.Background(), b); err != nil {
		return err
	}
	res.Attempted += len(entries)
	res.Accepted += counts.Accepted
	res.Duplicates += counts.Duplicates
	res.Filtered += counts.Filtered
	res.StillRejected += counts.StillRejected
	for c, n := range counts.StillRejectedByCode {
		res.StillRejectedByCode[c] += n
	}
	return nil
}

// writeReplays records, in the replay's transaction, what became of each
// dead-letter row.
func (e *Engine) writeReplays(ctx context.Context, b *batch) error {
	if len(b.replays) == 0 {
		return nil
	}
	if err := e.appendRows("temp", "stage_replay", 4, len(b.replays), func(i int, a []driver.Value) {
		r := &b.replays[i]
		a[0], a[1], a[2], a[3] = r.id, r.replayed, r.code, validText(r.reason)
	}); err != nil {
		return err
	}
	if _, err := e.conn.ExecContext(ctx, `UPDATE dlq SET
		replayed_at = CASE WHEN s.replayed THEN ?::TIMESTAMPTZ ELSE dlq.replayed_at END,
		last_replay_code = s.code, last_replay_reason = s.reason
		FROM temp.stage_replay s WHERE dlq.id = s.id`, b.now); err != nil {
		return fmt.Errorf("cannot mark dead letters replayed: %w", err)
	}
	if _, err := e.conn.ExecContext(ctx, `DELETE FROM temp.stage_replay`); err != nil {
		return fmt.Errorf("cannot mark dead letters replayed: %w", err)
	}
	return nil
}
