package wal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// The repair's swap protocol, steps 4 to 6 and the recovery of an
// interrupted swap (step 1): the protocol is in doc.go ("Repair").

// repairDir is where Repair builds the repaired WAL before swapping it in.
func repairDir(dir string) string { return dir + ".repair" }

// repairLock is the file Repair locks for its whole run. It lies beside
// dir, not in it: dir and its rebuild are renamed during a repair, and a
// second repair must wait whichever of them exists.
func repairLock(dir string) string { return dir + ".repair.lock" }

// completeFile is the marker of step 4 of the repair protocol (doc.go,
// "Repair"): it marks a rebuild as complete and holds the quarantine folder
// the damaged WAL moves into.
const completeFile = "OFFLOAD-REPAIR-COMPLETE"

// manifestPending is the manifest's name until step 6 of the repair
// protocol (doc.go, "Repair") gives it its own.
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

// swapIn is steps 4 and 5 of the repair protocol (doc.go, "Repair"), then
// step 6: the complete rebuild of dir takes dir's place and the damaged WAL
// moves into folder.
func swapIn(fs vfs.FS, dir, folder string) error {
	tmp := repairDir(dir)
	if err := writeFile(fs, filepath.Join(tmp, completeFile), []byte(folder)); err != nil {
		return fmt.Errorf("wal: repair of %s failed, nothing was changed: %w", dir, err)
	}
	if err := syncDir(fs, tmp); err != nil {
		return fmt.Errorf("wal: repair of %s failed, nothing was changed: %w", dir, err)
	}
	if err := fs.Rename(dir, filepath.Join(folder, "wal")); err != nil {
		// The WAL is untouched: the rebuild and the folder, which holds
		// only copies of its entries, go. Should that fail, the rebuild
		// stays complete and the next repair says what to do.
		cerr := errors.Join(fs.Remove(filepath.Join(tmp, completeFile)), fs.RemoveAll(tmp), fs.RemoveAll(folder))
		return errors.Join(fmt.Errorf("wal: repair of %s failed, nothing was changed: cannot move the damaged WAL into %s: %w", dir, folder, err), cerr)
	}
	if err := fs.Rename(tmp, dir); err != nil {
		return fmt.Errorf("wal: cannot move the rebuilt WAL %s to %s: %w (run the repair again to finish)", tmp, dir, err)
	}
	if err := syncDir(fs, filepath.Dir(dir)); err != nil {
		return fmt.Errorf("wal: %w (run the repair again to finish)", err)
	}
	return finishQuarantine(fs, dir, folder)
}

// finishInterrupted is step 1 of the repair protocol (doc.go, "Repair"):
// it finishes or discards what a repair stopped by a crash or an error
// left, or refuses when only the operator can tell which directory holds
// what.
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
			// Stopped between the two renames of step 5. (A rebuild
			// without the marker here was left by a repair from before
			// the marker.)
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

// finishQuarantine is step 6 of the repair protocol (doc.go, "Repair"):
// folder's manifest gets its name, then the marker leaves dir.
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
