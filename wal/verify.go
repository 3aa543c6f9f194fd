package wal

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	Entries     int
	Records     int
	Bytes       int64
	Corruptions []*CorruptionError
}

// Verify reads every entry and meta record, checks every checksum, the
// offset order inside and across entries and that each partition's meta
// agrees with its entries. It returns every damaged position it finds; the
// error is for failures to read at all.
//
// Entries and metas are read from one Pebble iterator, a consistent
// snapshot, so appends running concurrently cannot make them disagree.
func (w *WAL) Verify() (VerifyReport, error) {
	var rep VerifyReport
	if !w.use() {
		return rep, ErrClosed
	}
	defer w.done()
	it, err := w.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixEntry}, UpperBound: []byte{prefixMeta + 1}})
	if err != nil {
		return rep, err
	}
	type seen struct {
		last          int64
		entries, recs uint64
		bytes         uint64
		damaged       bool
	}
	parts := map[TopicPartition]*seen{}
	for valid := it.First(); valid; valid = it.Next() {
		prefix, tp, first, ok := decodeKey(it.Key())
		if !ok {
			rep.Corruptions = append(rep.Corruptions, &CorruptionError{Partition: -1, FirstOffset: -1, Record: -1,
				Reason: fmt.Sprintf("malformed key %x", it.Key())})
			continue
		}
		if prefix == prefixMeta {
			// Metas sort after every entry, so this partition's entries
			// have all been seen.
			s := parts[tp]
			delete(parts, tp)
			if s == nil {
				s = &seen{last: -1}
			}
			val, verr := w.value(it)
			if verr != nil {
				rep.Corruptions = append(rep.Corruptions, corruptionOf(verr))
				skipValue(it, it.Key())
				continue
			}
			m, merr := decodeMeta(tp, val)
			if merr != nil {
				rep.Corruptions = append(rep.Corruptions, corruptionOf(merr))
				continue
			}
			if s.damaged {
				continue // counts cannot agree; the damage is already reported
			}
			if s.entries != m.entries || s.recs != m.records || s.bytes != m.bytes || s.last > m.highWater {
				rep.Corruptions = append(rep.Corruptions, &CorruptionError{Topic: tp.TopicKey(), Partition: tp.Partition,
					FirstOffset: -1, Record: -1, Reason: fmt.Sprintf(
						"partition meta (entries %d, records %d, bytes %d, high water %d) disagrees with the entries (%d, %d, %d, last offset %d)",
						m.entries, m.records, m.bytes, m.highWater, s.entries, s.recs, s.bytes, s.last)})
			}
			continue
		}
		s := parts[tp]
		if s == nil {
			s = &seen{last: -1}
			parts[tp] = s
		}
		val, verr := w.value(it)
		if verr != nil {
			// The key reads: the scan goes on after it.
			rep.Corruptions = append(rep.Corruptions, corruptionOf(verr))
			s.damaged = true
			skipValue(it, it.Key())
			continue
		}
		rep.Entries++
		rep.Bytes += int64(len(it.Key()) + len(val))
		s.entries++
		s.bytes += uint64(len(it.Key()) + len(val))
		h, derr := decodeEntry(tp, first, val, nil)
		if derr != nil {
			rep.Corruptions = append(rep.Corruptions, corruptionOf(derr))
			s.damaged = true
			continue
		}
		if first <= s.last {
			rep.Corruptions = append(rep.Corruptions, &CorruptionError{Topic: tp.TopicKey(), Partition: tp.Partition,
				FirstOffset: first, Record: 0, Pos: entryHeaderLen,
				Reason: fmt.Sprintf("entry overlaps the previous one, which ends at offset %d", s.last)})
		}
		s.last = h.lastOffset
		s.recs += uint64(h.count)
		rep.Records += h.count
	}
	if err := it.Close(); err != nil {
		if !pebble.IsCorruptionError(err) {
			return rep, fmt.Errorf("wal: cannot verify: %w", err)
		}
		// The scan stopped at the damage: partitions whose meta was not
		// reached yet cannot be judged.
		w.blobRewrites.Store(false)
		rep.Corruptions = append(rep.Corruptions, corruptionOf(err))
		return rep, nil
	}
	// Pebble may rewrite blob files once no damage is known
	// (valueSeparationPolicy).
	w.blobRewrites.Store(len(rep.Corruptions) == 0 && len(parts) == 0)
	orphans := make([]TopicPartition, 0, len(parts))
	for tp := range parts {
		orphans = append(orphans, tp)
	}
	slices.SortFunc(orphans, TopicPartition.Compare)
	for _, tp := range orphans {
		rep.Corruptions = append(rep.Corruptions, &CorruptionError{Topic: tp.TopicKey(), Partition: tp.Partition,
			FirstOffset: -1, Record: -1, Reason: "entries without partition meta"})
	}
	return rep, nil
}

func corruptionOf(err error) *CorruptionError {
	var ce *CorruptionError
	if errors.As(asCorruption(err), &ce) {
		return ce
	}
	return &CorruptionError{Partition: -1, FirstOffset: -1, Record: -1, Reason: "read failed", Err: err}
}
