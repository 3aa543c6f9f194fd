package loader

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/offload/offload/engine"
)

// localError is a failure of the appliance's own disk or outbox: retried
// like the warehouse's failures, without counting against the circuit.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// damagedFile is an exported file that no longer matches the checksum
// ExportBatch took when it wrote it.
type damagedFile struct {
	path, want, got string // got is "" for a file that cannot be read
	err             error  // why it cannot be read
}

func (d damagedFile) String() string {
	if d.err != nil {
		return fmt.Sprintf("%s: %v", filepath.Base(d.path), d.err)
	}
	return fmt.Sprintf("%s: sha256 %s, exported as %s", filepath.Base(d.path), d.got, d.want)
}

// damaged checks x's files against their checksums and returns those that
// differ, are short or are missing.
func damaged(x engine.Export) []damagedFile {
	var bad []damagedFile
	for _, f := range x.Files() {
		want := x.Checksums[f]
		got, err := engine.FileChecksum(f)
		if err == nil && want == "" {
			err = errors.New("BUG: the export carries no checksum for it")
		}
		if err != nil || got != want {
			bad = append(bad, damagedFile{path: f, want: want, got: got, err: err})
		}
	}
	return bad
}

// parkError is a failure of a batch's exported files that retrying
// would only repeat: files damaged on two exports in a row, or a damaged
// file that cannot be set aside. The loader parks the batch (reason: the
// error), so the batches behind it go on and nothing more of it reaches
// the quarantine until the operator retries it. kept lists damaged files
// left where they were, which the cleanup after the attempt must not
// delete.
type parkError struct {
	err  error
	kept []string
}

func (e *parkError) Error() string { return e.err.Error() }
func (e *parkError) Unwrap() error { return e.err }

// verified returns x if its files match their checksums. Otherwise it
// moves the damaged files to the quarantine directory, exports the batch
// again from the outbox and checks the new files; it returns them if they
// match. If they are damaged too, it quarantines them and returns a
// parkError: at most two files per attempt reach the quarantine, and a
// batch damaged on every export is parked rather than retried for ever.
// A damaged file is neither loaded nor deleted.
func (l *Loader) verified(ctx context.Context, x engine.Export) (engine.Export, error) {
	first := damaged(x)
	if len(first) == 0 {
		return x, nil
	}
	if err := l.quarantine(x.ID, first); err != nil {
		return x, err
	}
	again, err := l.opts.Outbox.ExportBatch(ctx, x.ID, l.opts.Dir)
	var parts *engine.PartsDamagedError
	if errors.As(err, &parts) {
		return x, l.quarantineParts(parts)
	} else if err != nil {
		return x, &localError{fmt.Errorf("export again after quarantining damaged files: %w", err)}
	}
	second := damaged(again)
	if len(second) == 0 {
		l.log.Info("loader: batch exported again after damaged files were quarantined; the new files check", "batch", x.ID)
		return again, nil
	}
	if err := l.quarantine(x.ID, second); err != nil {
		return again, err
	}
	return again, &parkError{err: fmt.Errorf("exported files damaged twice in a row (%s; exported again: %s): "+
		"suspect the disk or memory under %s; check them, then retry the batch",
		damageList(first), damageList(second), l.opts.Dir)}
}

// quarantineParts moves a batch's damaged outbox parts to the quarantine
// and returns the parkError that parks the batch: the parts were the only
// copy of their rows on the appliance, so no retry can ship it.
func (l *Loader) quarantineParts(e *engine.PartsDamagedError) error {
	bad := make([]damagedFile, len(e.Parts))
	for i, p := range e.Parts {
		bad[i] = damagedFile{path: p.Path, want: p.Want, got: p.Got, err: p.Err}
	}
	if err := l.quarantine(e.Batch, bad); err != nil {
		return err
	}
	return &parkError{err: e}
}

func damageList(bad []damagedFile) string {
	s := make([]string, len(bad))
	for i, d := range bad {
		s[i] = d.String()
	}
	return strings.Join(s, ", ")
}

// quarantine moves the damaged files of batch id to the quarantine
// directory under names that keep the batch id and add the time, and
// logs and counts each. A missing file is logged only. A file is first
// renamed within its own directory, out of the way of the cleanup after
// the attempt and of the next export. A file that cannot be moved is
// left where it is and logged with its path; the others are still moved,
// and quarantine returns a parkError listing the files left: the batch is
// parked, so neither the cleanup nor a re-export deletes them.
func (l *Loader) quarantine(id string, bad []damagedFile) error {
	var failed []string
	var kept []string
	for _, d := range bad {
		if errors.Is(d.err, fs.ErrNotExist) {
			l.log.Error("loader: exported file of the batch is missing", "batch", id, "file", d.path)
			continue
		}
		dst, at, err := l.moveToQuarantine(d.path)
		if err != nil {
			l.log.Error("loader: exported file of the batch does not match its checksum and cannot be quarantined; left in place, never loaded",
				"batch", id, "file", at, "damage", d.String(), "err", err)
			failed = append(failed, fmt.Sprintf("%s cannot be moved to %s: %v; left as %s", d, l.opts.QuarantineDir, err, at))
			kept = append(kept, at)
			continue
		}
		l.log.Error("loader: exported file of the batch does not match its checksum; quarantined, never loaded",
			"batch", id, "file", dst, "damage", d.String())
		l.set(func(s *Status) { s.Quarantined, s.LastQuarantined = s.Quarantined+1, dst })
	}
	if len(failed) > 0 {
		return &parkError{err: fmt.Errorf("damaged exported files not quarantined (%s): check the disk under %s, then retry the batch",
			strings.Join(failed, "; "), l.opts.Dir), kept: kept}
	}
	return nil
}

// moveToQuarantine moves the file at path into the quarantine directory
// and returns its new path; on failure, it returns where the file is.
func (l *Loader) moveToQuarantine(path string) (dst, at string, err error) {
	if err := os.MkdirAll(l.opts.QuarantineDir, 0o750); err != nil {
		return "", path, fmt.Errorf("cannot create the quarantine directory: %w", err)
	}
	dst, err = quarantineName(l.opts.QuarantineDir, path, l.opts.Now())
	if err != nil {
		return "", path, err
	}
	held := filepath.Join(filepath.Dir(path), filepath.Base(dst))
	if err := os.Rename(path, held); err != nil {
		return "", path, err
	}
	if err := os.Rename(held, dst); err != nil {
		return "", held, err
	}
	return dst, dst, nil
}

// countQuarantined returns how many files dir holds and the newest one
// (by modification time): what earlier runs quarantined.
func countQuarantined(dir string) (int64, string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, "", nil
	} else if err != nil {
		return 0, "", err
	}
	var n int64
	var newest string
	var at time.Time
	for _, ent := range entries {
		if !ent.Type().IsRegular() {
			continue
		}
		n++
		if info, err := ent.Info(); err == nil && (newest == "" || info.ModTime().After(at)) {
			newest, at = filepath.Join(dir, ent.Name()), info.ModTime()
		}
	}
	return n, newest, nil
}

// quarantineName returns a free name in dir for the damaged file path:
// <batch>.<rows|windows>.<UTC time>[.<n>].parquet.
func quarantineName(dir, path string, now time.Time) (string, error) {
	stem := strings.TrimSuffix(filepath.Base(path), ".parquet") + "." + now.UTC().Format("20060102T150405.000000000Z")
	for n := 0; n < 1000; n++ {
		name := stem
		if n > 0 {
			name += fmt.Sprintf(".%d", n)
		}
		dst := filepath.Join(dir, name+".parquet")
		if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			return dst, nil
		} else if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("no free name for %s in %s", filepath.Base(path), dir)
}
