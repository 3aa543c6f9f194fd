package tui

import (
	"cmp"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/charmbracelet/lipgloss"

	"github.com/offload/offload/internal/admin"
	"github.com/offload/offload/internal/config"
)

// labelWidth aligns the panels' values after their labels.
const labelWidth = 8

func (m Model) label(st styles, name string) string {
	return st.label.Render(fmt.Sprintf("%-*s", labelWidth, name))
}

// throughput draws one line per stage: the current rate and a sparkline
// of the last polls.
func (m Model) throughput(st styles) []string {
	walGrowth := "–"
	if len(m.rates.walGrowth) > 0 {
		walGrowth = bytesIEC(m.rates.walGrowth.last()) + "/s"
	}
	rows := []struct {
		name, value string
		samples     series
	}{
		{"ingest", rate(m.status.Rates.IngestRecords), m.rates.ingest},
		{"engine", rate(m.status.Rates.EngineRecords), m.rates.engine},
		{"loader", rate(m.status.Rates.LoaderRows), m.rates.loader},
		{"wal net", walGrowth, m.rates.walGrowth},
	}
	const valueWidth = 13
	lines := make([]string, len(rows))
	for i, r := range rows {
		spark := sparkline(r.samples, m.width-labelWidth-valueWidth-1)
		lines[i] = m.label(st, r.name) + fmt.Sprintf("%*s ", valueWidth-1, r.value) + st.spark.Render(spark)
	}
	return lines
}

func (m Model) backlog(st styles) string {
	s := m.status
	runway := "∞"
	if s.Disk.RunwaySeconds >= 0 {
		runway = age(s.Disk.RunwaySeconds)
	}
	return m.label(st, "backlog") + fmt.Sprintf("WAL %s + outbox %s · oldest unshipped %s · runway %s",
		bytesIEC(float64(s.WAL.Bytes)), bytesIEC(float64(s.Outbox.Bytes)), age(s.Outbox.OldestUnshippedSeconds), runway)
}

// disk draws the budget gauge: a bar, used / budget and the percentage.
func (m Model) disk(st styles) string {
	d := m.status.Disk
	text := fmt.Sprintf(" %s / %s %.1f%%", bytesIEC(float64(d.UsedBytes)), bytesIEC(float64(d.BudgetBytes)), d.UsedRatio*100)
	width := max(10, min(40, m.width-labelWidth-lipgloss.Width(text)-2))
	filled := min(width, int(d.UsedRatio*float64(width)+0.5))
	bar := strings.Repeat("█", filled) + strings.Repeat("░", width-filled)
	style := st.ok
	switch {
	case d.UsedRatio >= 0.9:
		style = st.bad
	case d.UsedRatio >= 0.7:
		style = st.warn
	}
	return m.label(st, "disk") + "[" + style.Render(bar) + "]" + text
}

// loader draws the loader's state, its retry countdown, the outbox files
// it quarantined, if any, and its last error.
func (m Model) loader(st styles) []string {
	l := m.status.Loader
	if l == nil {
		return []string{m.label(st, "loader") + st.dim.Render("none: no warehouse configured")}
	}
	parts := []string{st.loaderState(l.State).Render(l.State), "circuit " + l.Circuit}
	if l.RetryInSeconds > 0 {
		left := time.Duration(l.RetryInSeconds*float64(time.Second)) - m.now().Sub(m.polledAt)
		parts = append(parts, st.warn.Render(fmt.Sprintf("retry in %ds", countdown(left))))
	}
	parts = append(parts, fmt.Sprintf("%s loaded · %s rows · %s retries", count(l.Loaded), count(l.Rows), count(l.Retries)))
	lines := []string{m.label(st, "loader") + strings.Join(parts, " · ")}
	if l.UnansweredSeconds > 0 {
		lines = append(lines, m.label(st, "")+st.bad.Render(l.Message))
	}
	if l.QuarantinedFiles > 0 {
		lines = append(lines, m.label(st, "")+st.bad.Render(fmt.Sprintf("quarantined: %s outbox files", count(l.QuarantinedFiles)))+
			" · latest "+filepath.Base(l.LastQuarantinedFile))
	}
	if l.LastError != "" {
		at := ""
		if l.LastErrorAt != nil {
			at = " " + l.LastErrorAt.UTC().Format("15:04:05")
		}
		lines = append(lines, m.label(st, "")+st.bad.Render("error"+at+": ")+oneLine(l.LastError))
	}
	return lines
}

func (m Model) windows(st styles) string {
	e := m.status.Engine
	watermark := "–"
	if e.Watermark != nil {
		watermark = e.Watermark.UTC().Format("2006-01-02 15:04:05Z") + " (lag " + age(m.now().Sub(*e.Watermark).Seconds()) + ")"
	}
	return m.label(st, "windows") + count(e.WindowsEmitted) + " emitted · watermark " + watermark
}

// dedupe draws the event time the remembered ids span against the
// configured window ("holds 23h59m of 24h"), and the filters' account.
func (m Model) dedupe(st styles) string {
	d := m.status.Engine.Dedupe
	line := m.label(st, "dedupe") + "holds " + age(d.HeldSeconds) + " of " + age(d.WindowSeconds) +
		" · " + count(d.Keys) + " ids · filters " + bytesIEC(float64(d.FilterBytes))
	if d.DiskLookups > 0 {
		line += " · " + count(d.DiskLookups) + " disk reads, " + count(d.FalsePositives) + " false positives"
	}
	return line
}

// dlq draws the dead-letter count and the most frequent reject reasons.
func (m Model) dlq(st styles) string {
	type reason struct {
		code string
		n    int64
	}
	var reasons []reason
	for code, n := range m.status.Engine.RejectedByCode {
		reasons = append(reasons, reason{code, n})
	}
	slices.SortFunc(reasons, func(a, b reason) int {
		return cmp.Or(cmp.Compare(b.n, a.n), strings.Compare(a.code, b.code))
	})
	line := m.label(st, "DLQ") + count(m.status.DLQ.Rows) + " rows"
	for i, r := range reasons[:min(5, len(reasons))] {
		sep := ", "
		if i == 0 {
			sep = " · "
		}
		line += sep + r.code + " " + st.warn.Render(count(r.n))
	}
	return line
}

// unmapped draws the source fields no mapping reads that the most rows
// carried (kept in ATTRIBUTES unless the topic drops them), a line only
// when there are some: how an operator sees a new field appear.
func (m Model) unmapped(st styles) []string {
	fields := m.status.Engine.UnmappedFields
	if len(fields) == 0 {
		return nil
	}
	line := m.label(st, "fields") + "unmapped"
	for i, f := range fields[:min(5, len(fields))] {
		sep := ", "
		if i == 0 {
			sep = " · "
		}
		line += sep + f.Name + " " + st.warn.Render(count(f.Rows))
	}
	return []string{line}
}

// walQuarantine draws what `offload wal repair` moved out of the WAL, a
// line only when it moved something.
func (m Model) walQuarantine(st styles) []string {
	w := m.status.WAL
	if w.QuarantinedEntries == 0 {
		return nil
	}
	return []string{m.label(st, "WAL") + st.warn.Render(fmt.Sprintf("quarantined: %s entries (%s records)", count(w.QuarantinedEntries), count(w.QuarantinedRecords))) +
		" in " + w.QuarantineDir}
}

// recreatedTopics draws a line per consumed topic that was deleted and
// created again (a new topic ID), none when there is none.
func (m Model) recreatedTopics(st styles) []string {
	var lines []string
	for _, r := range m.status.Kafka.RecreatedTopics {
		lines = append(lines, m.label(st, "Kafka")+st.warn.Render(fmt.Sprintf("topic %s recreated (new topic ID) at %s",
			r.Topic, r.At.UTC().Format("15:04:05 UTC")))+" · see the log")
	}
	return lines
}

// lagPanel draws the partitions' lag in columns, sorted and filtered, in
// at most height lines. With kafka.delivery: end-to-end each partition
// also shows how long its oldest record has waited for the warehouse
// load that lets its offset be committed, and the title the oldest of
// them: Kafka must retain the records that long (docs/OPERATIONS.md,
// "Choosing the delivery mode").
func (m Model) lagPanel(st styles, height int) []string {
	endToEnd := m.status.Kafka.Delivery == config.DeliveryEndToEnd
	var parts []admin.PartitionStatus
	var total int64
	var oldest float64
	for _, p := range m.status.Kafka.Partitions {
		if strings.Contains(p.Topic, m.filter) {
			parts = append(parts, p)
			total += max(p.Lag, 0)
			oldest = max(oldest, p.UncommittedAgeSeconds)
		}
	}
	order := "lag"
	if m.sortByName {
		order = "name"
	}
	slices.SortFunc(parts, func(a, b admin.PartitionStatus) int {
		byName := cmp.Or(strings.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
		if m.sortByName {
			return byName
		}
		return cmp.Or(cmp.Compare(b.Lag, a.Lag), byName)
	})
	title := fmt.Sprintf("lag %s across %d partitions · sorted by %s", count(total), len(parts), order)
	if endToEnd {
		title = fmt.Sprintf("lag (uncommitted age) %s across %d partitions · oldest %s · sorted by %s",
			count(total), len(parts), age(oldest), order)
	}
	if m.filter != "" {
		title += " · topic ~ " + strconv.Quote(m.filter)
	}
	lines := []string{st.title.Render(title)}

	cells := make([]string, len(parts))
	cellWidth := 0
	for i, p := range parts {
		lag := "?"
		if p.Lag >= 0 {
			lag = count(p.Lag)
		}
		cells[i] = fmt.Sprintf("%s/%d %s", p.Topic, p.Partition, lag)
		if endToEnd {
			cells[i] += " (" + age(p.UncommittedAgeSeconds) + ")"
		}
		cellWidth = max(cellWidth, lipgloss.Width(cells[i]))
	}
	cols := max(1, (m.width+2)/(cellWidth+2))
	rows := (len(cells) + cols - 1) / cols
	if rows > height-1 {
		rows = max(0, height-2)
	}
	for r := range rows {
		var line []string
		for _, c := range cells[r*cols : min(len(cells), (r+1)*cols)] {
			line = append(line, fmt.Sprintf("%-*s", cellWidth, c))
		}
		lines = append(lines, "  "+strings.Join(line, "  "))
	}
	if hidden := len(cells) - rows*cols; hidden > 0 && height > 1 {
		lines = append(lines, st.dim.Render(fmt.Sprintf("  … %d more partitions", hidden)))
	}
	return lines
}

// parkedRow is a parked batch as the panel shows it.
type parkedRow struct {
	admin.ParkedBatch
	selected bool
}

// parkedPanel draws the parked batches in height lines, keeping the
// selected one in view; height 0 means as many as there are.
func (m Model) parkedPanel(st styles, height int) []string {
	rows := m.parked()
	if len(rows) == 0 {
		return nil
	}
	if height == 0 {
		height = len(rows) + 1
	}
	lines := []string{st.bad.Render(fmt.Sprintf("parked %d", len(rows))) + st.dim.Render(" · ↑/↓ select · r retry")}
	visible := height - 1
	first := 0
	for i, r := range rows {
		if r.selected && i >= visible {
			first = i - visible + 1
		}
	}
	for _, r := range rows[first:min(len(rows), first+visible)] {
		line := fmt.Sprintf("%s  %s rows  %s", r.ID, count(r.Rows), oneLine(r.Error))
		if r.selected {
			lines = append(lines, "▸ "+st.selected.Render(fit(line, m.width-2)))
			continue
		}
		lines = append(lines, "  "+line)
	}
	return lines
}

// oneLine folds an error message onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
