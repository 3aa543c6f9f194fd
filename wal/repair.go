package wal

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
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

// Moved is one thing Repair moved to quarantine.
type Moved struct {
	Kind string `json:"kind"`
	// Topic is the topic key (TopicPartition.TopicKey): "topic#N" for
	// incarnation N of a recreated topic.
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
	// Topic is the topic key, as in Moved.
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

// Repair rebuilds the WAL in dir from every entry that checks and moves
// what does not into a new folder wal-<UTC time> under quarantine. It
// never deletes WAL data: the damaged entries' raw keys and values are
// written to that folder with a manifest (ManifestFile, the report as
// JSON), and the whole old WAL directory is moved into it, so bytes Pebble
// could not read are kept too. Each partition keeps its high water where
// its meta or its highest entry can be read (see RepairReport.HighWater),
// so a re-fetch of moved records is not admitted again.
//
// One repair runs at a time, and none while the appliance has the WAL
// open. A sound WAL is left as it is and the report has no Quarantine.
// Damage inside Pebble's log that stops the database from opening at all
// cannot be repaired here. The steps, and how a repair run again finishes
// one a crash interrupted, are the repair protocol in doc.go ("Repair").
func Repair(dir, quarantine string, opts Options) (RepairReport, error) {
	opts.EnsureDefaults()
	rep := RepairReport{Created: opts.Now().UTC(), Moved: []Moved{}, Damage: []string{}, HighWater: []HighWaterLoss{}}
	fs := opts.FS
	tmp := repairDir(dir)
	// Step 1: lock, and finish what an interrupted repair left.
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

	// Step 2: rebuild.
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
	s := &repairScan{old: old, out: rebuilt.db, rep: &rep, seen: map[string]bool{}}
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

	// Step 3: the quarantine folder.
	folder := filepath.Join(quarantine, quarantinePrefix+rep.Created.Format("20060102T150405.000Z"))
	if err := s.writeQuarantine(fs, folder); err != nil {
		return rep, fmt.Errorf("wal: repair of %s failed, nothing was changed: cannot write the quarantine folder: %w", dir, err)
	}
	rep.Quarantine = folder
	return rep, swapIn(fs, dir, folder)
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
