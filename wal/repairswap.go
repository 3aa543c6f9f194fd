package wal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// The repair's swap protocol: the marker, the two renames and the recovery
// of an interrupted swap (see "Repair" in doc.go).

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

func oserrNotExist(err error) bool { return errors.Is(err, os.ErrNotExist) }

func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
