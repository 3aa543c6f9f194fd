package wal

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Kinds of what Repair moves to quarantine.
const (
	// MovedEntry is one damaged entry; its raw key and value are saved.
	MovedEntry = "entry"
	// MovedRange is a run of a partition's offsets that Pebble cannot read
	// (a damaged block); its bytes stay in the quarantined WAL directory.
	MovedRange = "unreadable"
	// MovedMeta is a damaged partition meta, rebuilt from the kept entries.
	MovedMeta = "meta"
	// MovedKey is a key that is neither an entry's nor a meta's.
	MovedKey = "key"
	// MovedFile is a Pebble file holding partition metas that cannot be
	// read: partitions held only in it are not in the repaired WAL. It
	// counts as one entry of unknown size.
	MovedFile = "file"
)

// ManifestFile is the name of the manifest in each quarantine folder.
const ManifestFile = "manifest.json"

// quarantinePrefix starts the name of each repair's quarantine folder
// (wal-<UTC time>); ReadQuarantine counts only these.
const quarantinePrefix = "wal-"

// Moved is one thing Repair moved to quarantine.
type Moved struct {
	Kind      string `json:"kind"`
	Topic     string `json:"topic,omitempty"`
	Partition int32  `json:"partition"`
	// FirstOffset and LastOffset bound the offsets moved: the entry's key
	// and last offset, or the unreadable run. LastOffset is -1 when it is
	// not known (an unreadable partition end).
	FirstOffset int64 `json:"first_offset"`
	LastOffset  int64 `json:"last_offset"`
	// Records is the number of records moved, -1 when not known (the
	// partition's count in the manifest's totals then comes from its meta).
	Records int64  `json:"records"`
	Reason  string `json:"reason"`
	// KeyFile and ValueFile name the raw bytes, relative to the folder.
	KeyFile   string `json:"key_file,omitempty"`
	ValueFile string `json:"value_file,omitempty"`
	// PebbleFile is the damaged Pebble file, for unreadable runs.
	PebbleFile string `json:"pebble_file,omitempty"`
}

// HighWaterLoss is a partition whose high water Repair could not rebuild
// for certain.
type HighWaterLoss struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// HighWater is what the repaired WAL holds: the highest offset still
	// known, -1 for none.
	HighWater int64  `json:"high_water"`
	Reason    string `json:"reason"`
}

// RepairReport is what Repair found and did; it is also the quarantine
// folder's manifest.
type RepairReport struct {
	Created time.Time `json:"created"`
	// KeptEntries and KeptRecords are what the repaired WAL holds.
	KeptEntries int64 `json:"kept_entries"`
	KeptRecords int64 `json:"kept_records"`
	// Entries and Records are how many entries and records were moved.
	Entries int64   `json:"entries"`
	Records int64   `json:"records"`
	Moved   []Moved `json:"moved"`
	// Damage is every damaged position found, as Verify reports them.
	Damage []string `json:"damage"`
	// HighWater lists the partitions whose high water may now be lower
	// than before: their meta could not be read, nor the last offset of
	// their highest entry (or no entry was left). A re-fetch of offsets
	// above the rebuilt high water is admitted again.
	HighWater []HighWaterLoss `json:"high_water_uncertain"`
	// Quarantine is the folder holding what was moved and the damaged WAL
	// directory as it was (in its subdirectory "wal"); empty when nothing
	// was damaged.
	Quarantine string `json:"-"`
}

// repairDir is where Repair builds the repaired WAL before swapping it in.
func repairDir(dir string) string { return dir + ".repair" }

// repairLock is the file Repair locks for its whole run. It lies beside
// dir, not in it: dir and its rebuild are renamed during a repair, and a
// second repair must wait whichever of them exists.
func repairLock(dir string) string { return dir + ".repair.lock" }

// completeFile marks a rebuild as complete: written into the rebuild
// directory, synced, right before the swap. It holds the quarantine folder
// the damaged WAL moves into. A rebuild without it may be discarded; one
// with it is the only copy of the repaired WAL once the swap has begun,
// and is never discarded. It stays in the WAL directory after the swap
// until the quarantine folder's manifest is in place.
const completeFile = "OFFLOAD-REPAIR-COMPLETE"

// manifestPending is the manifest's name until the swap succeeded: a
// quarantine folder counts only once the WAL no longer holds its entries.
const manifestPending = ManifestFile + ".pending"

// readComplete reads the marker in dir: the quarantine folder it names,
// and whether it is there.
func readComplete(fs vfs.FS, dir string) (folder string, ok bool, err error) {
	f, err := fs.Open(filepath.Join(dir, completeFile))
	if oserrNotExist(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	b, err := io.ReadAll(f)
	_ = f.Close()
	return string(b), err == nil, err
}

// Repair rebuilds the WAL in dir from every entry that checks and moves
// what does not into a new folder wal-<UTC time> under quarantine. It
// never deletes WAL data: the damaged entries' raw keys and values are
// written to that folder with a manifest (ManifestFile, the report as
// JSON), and the whole old WAL directory is moved into it, so bytes Pebble
// could not read are kept too. Each partition keeps its high water where
// its meta or its highest entry can be read (see RepairReport.HighWater),
// so a re-fetch of moved records is not admitted again.
//
// Repair locks a file beside dir (one repair at a time) and takes the
// WAL's directory lock: it fails while the appliance has the WAL open. A
// sound WAL is left as it is and the report has no Quarantine. Damage
// inside Pebble's log that stops the database from opening at all cannot
// be repaired here.
func Repair(dir, quarantine string, opts Options) (RepairReport, error) {
	opts.EnsureDefaults()
	rep := RepairReport{Created: opts.Now().UTC(), Moved: []Moved{}, Damage: []string{}, HighWater: []HighWaterLoss{}}
	fs := opts.FS
	tmp := repairDir(dir)
	rlock, err := fs.Lock(repairLock(dir))
	if err != nil {
		return rep, fmt.Errorf("wal: cannot lock %s: %w (is another `offload wal repair` running?)", repairLock(dir), err)
	}
	defer rlock.Close()
	if err := finishInterrupted(fs, dir); err != nil {
		return rep, err
	}
	if _, err := fs.Stat(dir); err != nil {
		if oserrNotExist(err) {
			return rep, ErrNotFound
		}
		return rep, err
	}
	lock, err := pebble.LockDirectory(dir, fs)
	if err != nil {
		return rep, fmt.Errorf("wal: cannot lock %s: %w (if offload is running, stop it first)", dir, err)
	}
	defer lock.Close()

	ropts := opts
	ropts.ReadOnly = true
	// Every damaged block the scan meets, and meets again while probing
	// past it, is in the report; logging each read of it says nothing more.
	ropts.Logger = slog.New(slog.DiscardHandler)
	old := &WAL{opts: ropts}
	if err := old.openDB(dir, lock); err != nil {
		return rep, err
	}
	nopts := opts
	nopts.ReadOnly = false
	rebuilt, err := Open(tmp, nopts)
	if err != nil {
		_ = old.db.Close()
		return rep, err
	}
	s := &repairScan{old: old.db, out: rebuilt.db, rep: &rep, seen: map[string]bool{}}
	err = s.run()
	if cerr := old.db.Close(); err == nil {
		err = cerr
	}
	if err == nil && len(rep.Damage) == 0 {
		// Sound: leave the WAL as it is.
		err = rebuilt.Close()
		return rep, errors.Join(err, fs.RemoveAll(tmp))
	}
	if err == nil {
		err = checkRebuilt(rebuilt)
	}
	if cerr := rebuilt.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return rep, fmt.Errorf("wal: repair of %s failed, nothing was changed: %w", dir, err)
	}

	folder := filepath.Join(quarantine, quarantinePrefix+rep.Created.Format("20060102T150405.000Z"))
	if err := s.writeQuarantine(fs, folder); err != nil {
		return rep, fmt.Errorf("wal: repair of %s failed, nothing was changed: cannot write the quarantine folder: %w", dir, err)
	}
	rep.Quarantine = folder
	if err := writeFile(fs, filepath.Join(tmp, completeFile), []byte(folder)); err != nil {
		return rep, fmt.Errorf("wal: repair of %s failed, nothing was changed: %w", dir, err)
	}
	if err := syncDir(fs, tmp); err != nil {
		return rep, fmt.Errorf("wal: repair of %s failed, nothing was changed: %w", dir, err)
	}
	// The swap: the damaged WAL moves into the quarantine folder, the
	// rebuilt one takes its place. Open refuses to start between the two
	// renames, and Repair finishes the swap when run again.
	if err := fs.Rename(dir, filepath.Join(folder, "wal")); err != nil {
		// The WAL is untouched: the rebuild and the folder, which holds
		// only copies of its entries, go. Should that fail, the rebuild
		// stays complete and the next repair says what to do.
		cerr := errors.Join(fs.Remove(filepath.Join(tmp, completeFile)), fs.RemoveAll(tmp), fs.RemoveAll(folder))
		return rep, errors.Join(fmt.Errorf("wal: repair of %s failed, nothing was changed: cannot move the damaged WAL into %s: %w", dir, folder, err), cerr)
	}
	if err := fs.Rename(tmp, dir); err != nil {
		return rep, fmt.Errorf("wal: cannot move the rebuilt WAL %s to %s: %w (run the repair again to finish)", tmp, dir, err)
	}
	if err := syncDir(fs, filepath.Dir(dir)); err != nil {
		return rep, fmt.Errorf("wal: %w (run the repair again to finish)", err)
	}
	return rep, finishQuarantine(fs, dir, folder)
}

// finishInterrupted deals with what a repair stopped by a crash or an
// error left. A rebuild is swapped in when dir is gone. Beside dir, one
// without its marker is discarded, and a complete one is refused (which
// of the two holds what only the operator can tell). A WAL directory
// still holding the marker gets its quarantine manifest put in place.
func finishInterrupted(fs vfs.FS, dir string) error {
	tmp := repairDir(dir)
	if _, err := fs.Stat(tmp); err == nil {
		folder, complete, err := readComplete(fs, tmp)
		if err != nil {
			return fmt.Errorf("wal: cannot read the rebuild %s: %w", tmp, err)
		}
		_, derr := fs.Stat(dir)
		switch {
		case oserrNotExist(derr):
			// A repair stopped between moving the damaged WAL away and
			// moving the rebuilt one in: finish it. (A rebuild without
			// the marker here was left by a repair from before it.)
			if err := fs.Rename(tmp, dir); err != nil {
				return fmt.Errorf("wal: cannot finish the interrupted repair: %w", err)
			}
			if err := syncDir(fs, filepath.Dir(dir)); err != nil {
				return err
			}
		case !complete:
			// A rebuild that never replaced anything.
			if err := fs.RemoveAll(tmp); err != nil {
				return fmt.Errorf("wal: cannot remove the unfinished rebuild %s: %w", tmp, err)
			}
		default:
			return interruptedBoth(fs, dir, folder)
		}
	}
	folder, complete, err := readComplete(fs, dir)
	if err != nil || !complete {
		return err
	}
	return finishQuarantine(fs, dir, folder)
}

// interruptedBoth is the error for a complete rebuild found beside a WAL
// directory.
func interruptedBoth(fs vfs.FS, dir, folder string) error {
	tmp := repairDir(dir)
	moved := filepath.Join(folder, "wal")
	if _, err := fs.Stat(moved); err == nil {
		return fmt.Errorf("wal: %s holds the complete repaired WAL, and the damaged WAL is in %s, but %s exists too: something created it after the repair moved the damaged WAL away, and it lacks what the repaired WAL holds; move %s aside (keep it until you know what wrote it), then run `offload wal repair` again to finish the swap: %w",
			tmp, moved, dir, dir, ErrRepairInterrupted)
	}
	return fmt.Errorf("wal: %s holds a complete repaired WAL, but the repair stopped before it moved the damaged WAL %s into %s, so %s is most likely the damaged WAL itself (`offload wal verify` shows its damage); if so, move %s aside and run `offload wal repair` again, which repairs %s afresh: %w",
		tmp, dir, moved, dir, tmp, dir, ErrRepairInterrupted)
}

// finishQuarantine puts folder's manifest in place once the swap is done
// (the WAL no longer holds what it counts) and then removes the marker
// from dir.
func finishQuarantine(fs vfs.FS, dir, folder string) error {
	pending := filepath.Join(folder, manifestPending)
	if _, err := fs.Stat(pending); err == nil {
		if err := fs.Rename(pending, filepath.Join(folder, ManifestFile)); err != nil {
			return fmt.Errorf("wal: cannot put the manifest of %s in place: %w (run the repair again to finish)", folder, err)
		}
	}
	if err := syncDir(fs, folder); err != nil {
		return err
	}
	if err := fs.Remove(filepath.Join(dir, completeFile)); err != nil && !oserrNotExist(err) {
		return err
	}
	return syncDir(fs, dir)
}

// checkRebuilt verifies the rebuilt WAL: every entry in it checked when it
// was copied, so damage here is a bug of the repair.
func checkRebuilt(w *WAL) error {
	v, err := w.Verify()
	if err != nil {
		return err
	}
	if len(v.Corruptions) > 0 {
		return fmt.Errorf("BUG: the rebuilt WAL does not verify: %v", v.Corruptions[0])
	}
	return nil
}

func oserrNotExist(err error) bool { return errors.Is(err, os.ErrNotExist) }

func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// repairScan copies what checks from old to out and collects the rest.
type repairScan struct {
	old, out *pebble.DB
	rep      *RepairReport
	raw      [][2][]byte     // key and value of each Moved with files, in order
	seen     map[string]bool // keys already moved
	batch    *pebble.Batch
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
	it, err := s.old.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
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
			val, _ := it.ValueAndErr()
			s.malformedKey(key, val)
			valid = it.Next()
			continue
		}
		found[tp] = true
		if prefix == prefixEntry {
			valid = it.SeekGE(prefixEnd(partitionPrefix(prefixEntry, tp.Topic, tp.Partition)))
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
// a meta that agrees with what was copied and keeps the high water. With
// the meta unreadable, the high water is the last offset of the highest
// entry, kept or moved, whose header checks; where that entry's last
// offset is not known the high water may come out lower than it was, and
// the report says so.
func (s *repairScan) partition(tp TopicPartition) error {
	oldMeta, metaOK := s.meta(tp)
	kept := partitionMeta{highWater: -1}
	if metaOK {
		kept.highWater, kept.topicID = oldMeta.highWater, oldMeta.topicID
	}
	var moved partitionMeta // entries and records moved, where known
	unknown := false        // something was moved whose record count is not known
	lo := partitionPrefix(prefixEntry, tp.Topic, tp.Partition)
	it, err := s.old.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return err
	}
	defer it.Close()
	end := int64(-1) // last offset of the last entry kept
	bad := int64(0)  // an offset whose seek meets the damage
	// Why the last offset of the highest entry met is not known; empty
	// once it is.
	tail := "no entry is left"
	for valid := it.First(); ; {
		if !valid {
			corrupt, err := stopped(it)
			if err != nil {
				return err
			}
			if corrupt == nil {
				break
			}
			// A block Pebble cannot read: go on from the first offset
			// that it can, moving the run in between.
			ce := corruptionOf(corrupt)
			s.damage(ce)
			next, ok := s.probe(tp, bad)
			r := Moved{Kind: MovedRange, Topic: tp.Topic, Partition: tp.Partition, FirstOffset: end + 1, LastOffset: -1,
				Records: -1, Reason: ce.Error(), PebbleFile: ce.File}
			unknown = true
			moved.entries++
			if ok {
				valid = it.SeekGE(entryKey(tp, next))
				if valid {
					_, _, first, _ := decodeKey(it.Key())
					r.LastOffset = first - 1
				}
			} else if metaOK {
				r.LastOffset = oldMeta.highWater
			}
			kept.highWater = max(kept.highWater, r.LastOffset)
			if r.LastOffset < 0 {
				tail = fmt.Sprintf("the entries from offset %d on are unreadable", r.FirstOffset)
			}
			s.rep.Moved = append(s.rep.Moved, r)
			if !ok {
				break
			}
			bad = next // a later damaged block is probed from here on
			continue
		}
		key := it.Key()
		prefix, _, first, ok := decodeKey(key)
		val, verr := it.ValueAndErr()
		if verr != nil {
			// A value Pebble cannot read (a damaged value block): the
			// iterator moves on past it.
			ce := corruptionOf(verr)
			s.damage(ce)
			s.rep.Moved = append(s.rep.Moved, Moved{Kind: MovedRange, Topic: tp.Topic, Partition: tp.Partition,
				FirstOffset: first, LastOffset: -1, Records: -1, Reason: ce.Error(), PebbleFile: ce.File})
			unknown = true
			moved.entries++
			kept.highWater = max(kept.highWater, first)
			tail = fmt.Sprintf("the entry at offset %d is unreadable", first)
			bad = first + 1
			valid = it.Next()
			continue
		}
		if !ok || prefix != prefixEntry {
			s.malformedKey(key, val)
			valid = it.Next()
			continue
		}
		bad = first + 1
		h, derr := decodeEntry(tp, first, val, nil)
		if derr == nil && first <= end {
			derr = &CorruptionError{Topic: tp.Topic, Partition: tp.Partition, FirstOffset: first, Record: 0, Pos: entryHeaderLen,
				Reason: fmt.Sprintf("entry overlaps the previous one, which ends at offset %d", end)}
		}
		if derr != nil {
			s.damage(derr)
			m := Moved{Kind: MovedEntry, Topic: tp.Topic, Partition: tp.Partition, FirstOffset: first, LastOffset: first,
				Records: -1, Reason: derr.Error()}
			// A damaged entry's header may claim any last offset, and a
			// high water set too far would drop records never seen: its
			// last offset counts only when the header's checksum holds.
			kept.highWater = max(kept.highWater, first)
			if hh, ok := decodeHeader(val); ok {
				m.LastOffset, m.Records = hh.lastOffset, int64(hh.count)
				moved.records += uint64(hh.count)
				kept.highWater = max(kept.highWater, hh.lastOffset)
				tail = ""
			} else {
				unknown = true
				tail = fmt.Sprintf("the header of the entry at offset %d is damaged", first)
			}
			moved.entries++
			s.movedRaw(m, key, val)
			valid = it.Next()
			continue
		}
		if err := s.batch.Set(key, val, nil); err != nil {
			return err
		}
		end = h.lastOffset
		kept.highWater = max(kept.highWater, h.lastOffset)
		tail = ""
		kept.bytes += uint64(len(key) + len(val))
		kept.entries++
		kept.records += uint64(h.count)
		if err := s.flush(false); err != nil {
			return err
		}
		valid = it.Next()
	}
	if metaOK && (oldMeta.entries != kept.entries+moved.entries || oldMeta.records != kept.records+moved.records) && !unknown {
		// The meta disagreed with the entries while every entry's count
		// is known: the meta was wrong, not the entries. Keep its bytes.
		s.damage(&CorruptionError{Topic: tp.Topic, Partition: tp.Partition, FirstOffset: -1, Record: -1,
			Reason: "partition meta disagrees with the entries"})
		s.movedRaw(Moved{Kind: MovedMeta, Topic: tp.Topic, Partition: tp.Partition, FirstOffset: -1, LastOffset: -1,
			Reason: "partition meta disagrees with the entries; rebuilt from them"}, metaKey(tp), encodeMeta(oldMeta))
	}
	if unknown && metaOK && oldMeta.records >= kept.records+moved.records {
		// The meta counted the records the unreadable runs held.
		moved.records = oldMeta.records - kept.records
		moved.entries = max(moved.entries, oldMeta.entries-min(oldMeta.entries, kept.entries))
	}
	if !metaOK && tail != "" {
		s.rep.HighWater = append(s.rep.HighWater, HighWaterLoss{Topic: tp.Topic, Partition: tp.Partition, HighWater: kept.highWater,
			Reason: "the partition meta is unreadable and " + tail + "; the high water may be lower than before"})
	}
	s.rep.KeptEntries += int64(kept.entries)
	s.rep.KeptRecords += int64(kept.records)
	s.rep.Entries += int64(moved.entries)
	s.rep.Records += int64(moved.records)
	return s.batch.Set(metaKey(tp), encodeMeta(kept), nil)
}

// meta reads tp's meta; a damaged one is moved and reported.
func (s *repairScan) meta(tp TopicPartition) (partitionMeta, bool) {
	k := metaKey(tp)
	v, closer, err := s.old.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		s.damage(&CorruptionError{Topic: tp.Topic, Partition: tp.Partition, FirstOffset: -1, Record: -1, Reason: "entries without partition meta"})
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
		s.movedRaw(Moved{Kind: MovedMeta, Topic: tp.Topic, Partition: tp.Partition, FirstOffset: -1, LastOffset: -1,
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
	lo := partitionPrefix(prefixEntry, tp.Topic, tp.Partition)
	it, err := s.old.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
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

// decodeHeader decodes a damaged entry's header when its checksum holds,
// for the record count the report gives.
func decodeHeader(v []byte) (entryHeader, bool) {
	if len(v) < entryHeaderLen || checksum(v[:entryCRCAt]) != binary.BigEndian.Uint32(v[entryCRCAt:]) || v[entryVersionAt] != formatVersion {
		return entryHeader{}, false
	}
	return parseHeader(v), true
}

// writeQuarantine writes the moved raw bytes and the manifest, under its
// pending name, into folder and syncs them.
func (s *repairScan) writeQuarantine(fs vfs.FS, folder string) error {
	if err := fs.MkdirAll(filepath.Join(folder, "raw"), 0o750); err != nil {
		return err
	}
	j := 0
	for _, m := range s.rep.Moved {
		if m.KeyFile == "" {
			continue
		}
		kv := s.raw[j]
		j++
		if err := writeFile(fs, filepath.Join(folder, m.KeyFile), kv[0]); err != nil {
			return err
		}
		if m.ValueFile != "" {
			if err := writeFile(fs, filepath.Join(folder, m.ValueFile), kv[1]); err != nil {
				return err
			}
		}
	}
	man, err := json.MarshalIndent(s.rep, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFile(fs, filepath.Join(folder, manifestPending), append(man, '\n')); err != nil {
		return err
	}
	return errors.Join(syncDir(fs, filepath.Join(folder, "raw")), syncDir(fs, folder), syncDir(fs, filepath.Dir(folder)))
}

func writeFile(fs vfs.FS, name string, b []byte) error {
	f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// QuarantineSummary totals the manifests of the quarantine folders under
// dir (a missing dir holds none).
type QuarantineSummary struct {
	Folders int
	Entries int64
	Records int64
	// Incomplete lists the wal-* folders without a readable manifest, not
	// counted: a repair that stopped while writing the folder (its WAL was
	// not changed) or before it finished the swap (run the repair again).
	Incomplete []string
}

// ReadQuarantine totals every wal-* folder's manifest under dir. Folders
// without a readable manifest are listed in Incomplete, not counted, and
// do not stop the count of the others.
func ReadQuarantine(fs vfs.FS, dir string) (QuarantineSummary, error) {
	var sum QuarantineSummary
	if fs == nil {
		fs = vfs.Default
	}
	names, err := fs.List(dir)
	if oserrNotExist(err) {
		return sum, nil
	}
	if err != nil {
		return sum, err
	}
	slices.Sort(names)
	for _, n := range names {
		if !strings.HasPrefix(n, quarantinePrefix) {
			continue
		}
		rep, err := readManifest(fs, filepath.Join(dir, n, ManifestFile))
		if err != nil {
			sum.Incomplete = append(sum.Incomplete, filepath.Join(dir, n))
			continue
		}
		sum.Folders++
		sum.Entries += rep.Entries
		sum.Records += rep.Records
	}
	return sum, nil
}

func readManifest(fs vfs.FS, name string) (RepairReport, error) {
	var rep RepairReport
	f, err := fs.Open(name)
	if err != nil {
		return rep, err
	}
	b, err := io.ReadAll(f)
	_ = f.Close()
	if err != nil {
		return rep, err
	}
	return rep, json.Unmarshal(b, &rep)
}
