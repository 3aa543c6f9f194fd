package appliance

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/offload/offload/internal/admin"
	"github.com/offload/offload/internal/config"
	"github.com/offload/offload/wal"
)

// openWALChecked opens the WAL and verifies every entry before anything
// reads it: the engine would stop at the first damaged entry anyway, and
// an operator is better told at start, with all the damage at once.
func openWALChecked(c *config.Config, fs vfs.FS, log *slog.Logger) (*wal.WAL, error) {
	w, err := wal.Open(WALDir(c.DataDir), wal.Options{FS: fs, Logger: log, MemTableSize: uint64(c.WAL.MemtableSize)})
	if err != nil {
		return nil, err
	}
	start := time.Now()
	rep, err := w.Verify()
	if err == nil && len(rep.Corruptions) > 0 {
		for _, ce := range rep.Corruptions {
			log.Error("wal: damaged", "at", ce.Error())
		}
		err = fmt.Errorf("%d damaged positions, the first: %w", len(rep.Corruptions), rep.Corruptions[0])
	}
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("wal: verify at start: %w", err)
	}
	log.Info("wal verified", "entries", rep.Entries, "records", rep.Records, "bytes", rep.Bytes, "took", time.Since(start))
	return w, nil
}

// readQuarantine counts what earlier repairs moved to the quarantine and
// says so in the log; the admin API shows it too.
func readQuarantine(dataDir string, log *slog.Logger) admin.WALQuarantine {
	dir := QuarantineDir(dataDir)
	q, err := wal.ReadQuarantine(nil, dir)
	if err != nil {
		log.Warn("wal: cannot count the quarantined entries", "err", err)
	}
	for _, f := range q.Incomplete {
		log.Warn("wal: quarantine folder without a manifest, not counted: a repair stopped before finishing it; if the WAL was not changed (no wal/ in it) the folder can go, else run `offload wal repair`",
			"dir", f)
	}
	if q.Entries > 0 {
		log.Warn("wal: damaged entries are in quarantine; they are not loaded", "entries", q.Entries,
			"records", q.Records, "dir", dir)
	}
	return admin.WALQuarantine{Entries: q.Entries, Records: q.Records, Dir: dir}
}

// WALRepairAdvice tells the operator how to get past damage in the WAL
// that err reports; other errors pass unchanged. Open and Run wrap their
// errors with it.
func WALRepairAdvice(err error, dataDir string) error {
	if !errors.As(err, new(*wal.CorruptionError)) && !errors.Is(err, wal.ErrRepairInterrupted) {
		return err
	}
	return fmt.Errorf("%w: the WAL is damaged; offload will not start on it: run `offload wal repair --data-dir %s`, which moves the damaged entries to %s (nothing is deleted) and keeps the rest",
		err, dataDir, QuarantineDir(dataDir))
}
