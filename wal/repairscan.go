package wal

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// The repair's scan: what it copies into the rebuilt WAL and what it moves
// to quarantine (see "Repair" in doc.go).

// repairScan copies what checks from old to out and collects the rest.
type repairScan struct {
	old   *WAL // the damaged WAL, open read-only
	out   *pebble.DB
	rep   *RepairReport
	raw   [][2][]byte     // key and value of each Moved with files, in order
	seen  map[string]bool // keys already moved
	batch *pebble.Batch
}

// movedRaw records a moved item whose key and value are saved, unless
// that key was moved already; it reports whether it recorded it.
func (s *repairScan) movedRaw(m Moved, key, val []byte) bool {
	if s.seen[string(key)] {
		return false
	}
	s.seen[string(key)] = true
	n := len(s.raw)
	m.KeyFile = fmt.Sprintf("raw/%06d.key", n)
	if val != nil {
		m.ValueFile = fmt.Sprintf("raw/%06d.value", n)
	}
	s.raw = append(s.raw, [2][]byte{bytes.Clone(key), bytes.Clone(val)})
	s.rep.Moved = append(s.rep.Moved, m)
	return true
}

func (s *repairScan) damage(err error) { s.rep.Damage = append(s.rep.Damage, err.Error()) }

// malformedKey moves a key that is neither an entry's nor a meta's. The
// partition scan meets again a key inside a partition's range that the
// key scan moved; it is reported once.
func (s *repairScan) malformedKey(key, val []byte) {
	reason := fmt.Sprintf("malformed key %x", key)
	if s.movedRaw(Moved{Kind: MovedKey, Partition: -1, FirstOffset: -1, LastOffset: -1, Reason: reason}, key, val) {
		s.damage(&CorruptionError{Partition: -1, FirstOffset: -1, Record: -1, Reason: reason})
	}
}

// stopped tells why an iterator stopped: at the end (nil, nil), at damage
// Pebble reports that the scan goes on past (corrupt), or on another error.
func stopped(it *pebble.Iterator) (corrupt, err error) {
	err = it.Error()
	if err == nil || pebble.IsCorruptionError(err) {
		return err, nil
	}
	return nil, err
}

func (s *repairScan) run() error {
	s.batch = s.out.NewBatch()
	parts, err := s.partitions()
	if err != nil {
		return err
	}
	for _, tp := range parts {
		if err := s.partition(tp); err != nil {
			return err
		}
	}
	return s.flush(true)
}

// flush applies the batch of copied entries once it is large, or at the
// end.
func (s *repairScan) flush(last bool) error {
	if !last && s.batch.Len() < 16<<20 {
		return nil
	}
	// The last apply syncs Pebble's log, which makes every batch before it
	// durable too.
	sync := pebble.NoSync
	if last {
		sync = pebble.Sync
	}
	if err := s.out.Apply(s.batch, sync); err != nil {
		return err
	}
	_ = s.batch.Close()
	s.batch = s.out.NewBatch()
	return nil
}

// partitions finds every partition with an entry or a meta: it hops from
// one partition's entries to the next, then reads the metas. Keys that are
// neither an entry's nor a meta's are moved. Where Pebble cannot read, it
// goes on after the damaged file's last key and takes the partitions of the
// file's first and last keys. A partition whose entries and meta all lie in
// such a file cannot be found at all: when a meta could not be read, the
// file is reported as moved (its bytes stay in the quarantined WAL
// directory).
func (s *repairScan) partitions() ([]TopicPartition, error) {
	found := map[TopicPartition]bool{}
	if _, err := s.scanKeys(nil, []byte{prefixMeta}, found); err != nil {
		return nil, err
	}
	skipped, err := s.scanKeys([]byte{prefixMeta}, nil, found)
	if err != nil {
		return nil, err
	}
	for _, info := range skipped {
		s.rep.Moved = append(s.rep.Moved, Moved{Kind: MovedFile, Partition: -1, FirstOffset: -1, LastOffset: -1, Records: -1,
			Reason: fmt.Sprintf("pebble cannot read partition metas in this file (keys %x to %x); partitions held only there are not in the repaired WAL",
				info.Bounds.Start, info.Bounds.End.Key),
			PebbleFile: info.Path})
		s.rep.Entries++
	}
	out := make([]TopicPartition, 0, len(found))
	for tp := range found {
		out = append(out, tp)
	}
	slices.SortFunc(out, TopicPartition.Compare)
	return out, nil
}

// scanKeys walks the keys in [lo, hi), adding the partition of each to
// found and moving malformed keys; from a partition's first entry it seeks
// past the partition. It returns the Pebble files it had to skip.
func (s *repairScan) scanKeys(lo, hi []byte, found map[TopicPartition]bool) ([]*pebble.DataCorruptionInfo, error) {
	it, err := s.old.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	var skipped []*pebble.DataCorruptionInfo
	for valid := it.First(); ; {
		if !valid {
			corrupt, err := stopped(it)
			if err != nil {
				_ = it.Close()
				return nil, err
			}
			if corrupt == nil {
				break
			}
			s.damage(asCorruption(corrupt))
			info := pebble.ExtractDataCorruptionInfo(corrupt)
			if info == nil || len(info.Bounds.End.Key) == 0 || slices.ContainsFunc(skipped, func(i *pebble.DataCorruptionInfo) bool { return i.Path == info.Path }) {
				// Nowhere known to go on from.
				skipped = append(skipped, &pebble.DataCorruptionInfo{Path: "(a file pebble does not name)"})
				break
			}
			skipped = append(skipped, info)
			for _, k := range [][]byte{info.Bounds.Start, info.Bounds.End.Key} {
				if _, tp, _, ok := decodeKey(k); ok {
					found[tp] = true
				}
			}
			valid = it.SeekGE(append(bytes.Clone(info.Bounds.End.Key), 0))
			continue
		}
		key := it.Key()
		prefix, tp, _, ok := decodeKey(key)
		if !ok {
			val, verr := s.old.value(it)
			s.malformedKey(key, val)
			if verr != nil {
				skipValue(it, key)
			}
			valid = it.Next()
			continue
		}
		found[tp] = true
		if prefix == prefixEntry {
			valid = it.SeekGE(prefixEnd(partitionPrefix(prefixEntry, tp)))
		} else {
			valid = it.Next()
		}
	}
	if err := it.Close(); err != nil && !pebble.IsCorruptionError(err) {
		return nil, err
	}
	return skipped, nil
}

// partition copies tp's entries that check, moves the others, and writes
// a meta that agrees with what was copied and keeps the high water (see
// "Repair" in doc.go for where the high water comes from).
func (s *repairScan) partition(tp TopicPartition) error {
	p := s.startPartition(tp)
	lo := partitionPrefix(prefixEntry, tp)
	it, err := s.old.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return err
	}
	defer it.Close()
	for valid := it.First(); ; {
		if !valid {
			corrupt, err := stopped(it)
			if err != nil {
				return err
			}
			if corrupt == nil {
				break
			}
			var more bool
			if valid, more = p.unreadableBlock(it, corrupt); !more {
				break
			}
			continue
		}
		key := it.Key()
		prefix, _, first, ok := decodeKey(key)
		val, verr := s.old.value(it)
		switch {
		case verr != nil && ok && prefix == prefixEntry:
			p.unreadableValue(first, verr)
			skipValue(it, key)
		case verr != nil:
			s.malformedKey(key, nil)
			skipValue(it, key)
		case !ok || prefix != prefixEntry:
			s.malformedKey(key, val)
		default:
			if err := p.entry(key, val, first); err != nil {
				return err
			}
		}
		valid = it.Next()
	}
	return p.finish()
}

// partitionScan is the state of the copy of one partition's entries.
type partitionScan struct {
	s       *repairScan
	tp      TopicPartition
	oldMeta partitionMeta
	metaOK  bool          // oldMeta was read
	kept    partitionMeta // what the rebuilt WAL holds, and the high water
	moved   partitionMeta // entries and records moved, where known
	unknown bool          // something was moved whose record count is not known
	end     int64         // last offset of the last entry kept
	bad     int64         // an offset whose seek meets the damage
	// tail says why the last offset of the highest entry met is not
	// known; empty once it is.
	tail string
	// open is the index in the report's Moved of an unreadable entry
	// whose last offset the next key bounds, -1 for none.
	open int
}

// startPartition reads tp's meta and starts its copy from the high water
// the meta holds.
func (s *repairScan) startPartition(tp TopicPartition) *partitionScan {
	p := &partitionScan{s: s, tp: tp, kept: partitionMeta{highWater: -1}, end: -1, tail: "no entry is left", open: -1}
	p.oldMeta, p.metaOK = s.meta(tp)
	if p.metaOK {
		p.kept.highWater, p.kept.topicID = p.oldMeta.highWater, p.oldMeta.topicID
	}
	return p
}

// unreadableBlock moves the run of offsets in a block Pebble cannot read
// and seeks to the first offset after it that Pebble can. more is false
// when no such offset is found: the rest of the partition is moved.
func (p *partitionScan) unreadableBlock(it *pebble.Iterator, corrupt error) (valid, more bool) {
	p.open = -1 // the run starts at its first offset, so its end is not known
	ce := corruptionOf(corrupt)
	p.s.damage(ce)
	next, ok := p.s.probe(p.tp, p.bad)
	r := Moved{Kind: MovedRange, Topic: p.tp.TopicKey(), Partition: p.tp.Partition, FirstOffset: p.end + 1, LastOffset: -1,
		Records: -1, Reason: ce.Error(), PebbleFile: ce.File}
	p.unknown = true
	p.moved.entries++
	if ok {
		valid = it.SeekGE(entryKey(p.tp, next))
		if valid {
			_, _, first, _ := decodeKey(it.Key())
			r.LastOffset = first - 1
		}
	} else if p.metaOK {
		r.LastOffset = p.oldMeta.highWater
	}
	p.kept.highWater = max(p.kept.highWater, r.LastOffset)
	if r.LastOffset < 0 {
		p.tail = fmt.Sprintf("the entries from offset %d on are unreadable", r.FirstOffset)
	}
	p.s.rep.Moved = append(p.s.rep.Moved, r)
	if !ok {
		return false, false
	}
	p.bad = next // a later damaged block is probed from here on
	return valid, true
}

// unreadableValue moves the entry at offset first whose value Pebble
// cannot read (a damaged blob file or value block) while its key reads;
// the scan goes on at the next key, whose offset bounds the entry's.
func (p *partitionScan) unreadableValue(first int64, verr error) {
	p.bound(first)
	ce := corruptionOf(verr)
	p.s.damage(ce)
	p.s.rep.Moved = append(p.s.rep.Moved, Moved{Kind: MovedRange, Topic: p.tp.TopicKey(), Partition: p.tp.Partition,
		FirstOffset: first, LastOffset: -1, Records: -1, Reason: ce.Error(), PebbleFile: ce.File})
	p.open = len(p.s.rep.Moved) - 1
	p.unknown = true
	p.moved.entries++
	p.kept.highWater = max(p.kept.highWater, first)
	p.tail = fmt.Sprintf("the entry at offset %d is unreadable", first)
	p.bad = first + 1
}

// bound ends the unreadable entry met last, if any, before the entry at
// offset next: entries do not overlap.
func (p *partitionScan) bound(next int64) {
	if p.open < 0 {
		return
	}
	m := &p.s.rep.Moved[p.open]
	m.LastOffset = next - 1
	p.kept.highWater = max(p.kept.highWater, m.LastOffset)
	p.open = -1
}

// entry copies the entry at offset first when it checks and does not
// overlap the one before, and moves it otherwise.
func (p *partitionScan) entry(key, val []byte, first int64) error {
	p.bound(first)
	p.bad = first + 1
	h, derr := decodeEntry(p.tp, first, val, nil)
	if derr == nil && first <= p.end {
		derr = &CorruptionError{Topic: p.tp.TopicKey(), Partition: p.tp.Partition, FirstOffset: first, Record: 0, Pos: entryHeaderLen,
			Reason: fmt.Sprintf("entry overlaps the previous one, which ends at offset %d", p.end)}
	}
	if derr != nil {
		p.damagedEntry(key, val, first, derr)
		return nil
	}
	if err := p.s.batch.Set(key, val, nil); err != nil {
		return err
	}
	p.end = h.lastOffset
	p.kept.highWater = max(p.kept.highWater, h.lastOffset)
	p.tail = ""
	p.kept.bytes += uint64(len(key) + len(val))
	p.kept.entries++
	p.kept.records += uint64(h.count)
	return p.s.flush(false)
}

// damagedEntry moves an entry that does not check, with its raw bytes.
func (p *partitionScan) damagedEntry(key, val []byte, first int64, derr error) {
	p.s.damage(derr)
	m := Moved{Kind: MovedEntry, Topic: p.tp.TopicKey(), Partition: p.tp.Partition, FirstOffset: first, LastOffset: first,
		Records: -1, Reason: derr.Error()}
	// A damaged entry's header may claim any last offset, and a high
	// water set too far would drop records never seen: its last offset
	// counts only when the header's checksum holds.
	p.kept.highWater = max(p.kept.highWater, first)
	if hh, herr := decodeHeader(p.tp, first, val); herr == nil {
		m.LastOffset, m.Records = hh.lastOffset, int64(hh.count)
		p.moved.records += uint64(hh.count)
		p.kept.highWater = max(p.kept.highWater, hh.lastOffset)
		p.tail = ""
	} else {
		p.unknown = true
		p.tail = fmt.Sprintf("the header of the entry at offset %d is damaged", first)
	}
	p.moved.entries++
	p.s.movedRaw(m, key, val)
}

// finish reconciles the old meta with what was kept and moved, adds the
// partition to the report and writes its rebuilt meta.
func (p *partitionScan) finish() error {
	s, tp, kept, moved, oldMeta := p.s, p.tp, &p.kept, &p.moved, p.oldMeta
	if p.open >= 0 && p.metaOK {
		// The partition's last entry is unreadable: it ends at the high
		// water, as the last entry always does.
		p.bound(oldMeta.highWater + 1)
	}
	if p.metaOK && (oldMeta.entries != kept.entries+moved.entries || oldMeta.records != kept.records+moved.records) && !p.unknown {
		// The meta disagreed with the entries while every entry's count
		// is known: the meta was wrong, not the entries. Keep its bytes.
		s.damage(&CorruptionError{Topic: tp.TopicKey(), Partition: tp.Partition, FirstOffset: -1, Record: -1,
			Reason: "partition meta disagrees with the entries"})
		s.movedRaw(Moved{Kind: MovedMeta, Topic: tp.TopicKey(), Partition: tp.Partition, FirstOffset: -1, LastOffset: -1,
			Reason: "partition meta disagrees with the entries; rebuilt from them"}, metaKey(tp), encodeMeta(oldMeta))
	}
	if p.unknown && p.metaOK && oldMeta.records >= kept.records+moved.records {
		// The meta counted the records the unreadable runs held.
		moved.records = oldMeta.records - kept.records
		moved.entries = max(moved.entries, oldMeta.entries-min(oldMeta.entries, kept.entries))
	}
	if !p.metaOK && p.tail != "" {
		s.rep.HighWater = append(s.rep.HighWater, HighWaterLoss{Topic: tp.TopicKey(), Partition: tp.Partition, HighWater: kept.highWater,
			Reason: "the partition meta is unreadable and " + p.tail + "; the high water may be lower than before"})
	}
	s.rep.KeptEntries += int64(kept.entries)
	s.rep.KeptRecords += int64(kept.records)
	s.rep.Entries += int64(moved.entries)
	s.rep.Records += int64(moved.records)
	return s.batch.Set(metaKey(tp), encodeMeta(*kept), nil)
}

// meta reads tp's meta; a damaged one is moved and reported.
func (s *repairScan) meta(tp TopicPartition) (partitionMeta, bool) {
	k := metaKey(tp)
	v, closer, err := s.old.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		s.damage(&CorruptionError{Topic: tp.TopicKey(), Partition: tp.Partition, FirstOffset: -1, Record: -1, Reason: "entries without partition meta"})
		return partitionMeta{}, false
	}
	if err != nil {
		s.damage(corruptionOf(err))
		return partitionMeta{}, false
	}
	defer closer.Close()
	m, err := decodeMeta(tp, v)
	if err != nil {
		s.damage(err)
		s.movedRaw(Moved{Kind: MovedMeta, Topic: tp.TopicKey(), Partition: tp.Partition, FirstOffset: -1, LastOffset: -1,
			Reason: err.Error()}, k, v)
		return partitionMeta{}, false
	}
	return m, true
}

// probe finds the first offset after bad from which tp's entries can be
// read again: seeking to bad meets a damaged block, seeking past the
// block's last key does not. It doubles the step until a seek succeeds,
// then halves back to the first offset that does. ok is false when no seek
// into tp's entries gets past the damage.
func (s *repairScan) probe(tp TopicPartition, bad int64) (next int64, ok bool) {
	lo := partitionPrefix(prefixEntry, tp)
	it, err := s.old.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return 0, false
	}
	defer it.Close()
	readable := func(off int64) bool { return it.SeekGE(entryKey(tp, off)) || it.Error() == nil }
	good := int64(-1)
	for step := int64(1); bad+step > bad; step *= 2 {
		if readable(bad + step) {
			good = bad + step
			break
		}
		if step > math.MaxInt64/2 {
			break
		}
	}
	if good < 0 {
		return 0, false
	}
	for good-bad > 1 {
		mid := bad + (good-bad)/2
		if readable(mid) {
			good = mid
		} else {
			bad = mid
		}
	}
	return good, true
}
