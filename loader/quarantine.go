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
	for _, f := range []string{x.RowsFile, x.WindowsFile} {
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

// verified returns x if its files match their checksums. Otherwise it
// moves the damaged files to the quarantine directory, exports the batch
// again from the outbox and checks the new files; it returns them if they
// match, or a localError. A damaged file is neither loaded nor deleted.
func (l *Loader) verified(ctx context.Context, x engine.Export) (engine.Export, error) {
	bad := damaged(x)
	if len(bad) == 0 {
		return x, nil
	}
	if err := l.quarantine(x.ID, bad); err != nil {
		return x, &localError{err}
	}
	again, err := l.opts.Outbox.ExportBatch(ctx, x.ID, l.opts.Dir)
	if err != nil {
		return x, &localError{fmt.Errorf("export again after quarantining damaged files: %w", err)}
	}
	if bad = damaged(again); len(bad) == 0 {
		l.log.Info("loader: batch exported again after damaged files were quarantined; the new files check", "batch", x.ID)
		return again, nil
	}
	if err := l.quarantine(x.ID, bad); err != nil {
		return again, &localError{err}
	}
	return again, &localError{fmt.Errorf("exported files damaged twice in a row (%s): check the disk under %s",
		bad[0], l.opts.Dir)}
}

// quarantine moves the damaged files of batch id to the quarantine
// directory under names that keep the batch id and add the time, and
// logs and counts each. A missing file is logged only. A file is first
// renamed within its own directory, out of the way of the cleanup after
// the attempt and of the next export: if the move to the quarantine
// directory then fails, the error names where the file stays.
func (l *Loader) quarantine(id string, bad []damagedFile) error {
	for _, d := range bad {
		if errors.Is(d.err, fs.ErrNotExist) {
			l.log.Error("loader: exported file of the batch is missing", "batch", id, "file", d.path)
			continue
		}
		if err := os.MkdirAll(l.opts.QuarantineDir, 0o750); err != nil {
			return fmt.Errorf("cannot create the quarantine directory: %w", err)
		}
		dst, err := quarantineName(l.opts.QuarantineDir, d.path, l.opts.Now())
		if err != nil {
			return fmt.Errorf("cannot quarantine damaged file %s: %w", d, err)
		}
		held := filepath.Join(filepath.Dir(d.path), filepath.Base(dst))
		if err := os.Rename(d.path, held); err != nil {
			return fmt.Errorf("cannot quarantine damaged file %s: %w", d, err)
		}
		if err := os.Rename(held, dst); err != nil {
			return fmt.Errorf("damaged file %s kept as %s: cannot move it to the quarantine directory: %w", d, held, err)
		}
		l.log.Error("loader: exported file of the batch does not match its checksum; quarantined, never loaded",
			"batch", id, "file", dst, "damage", d.String())
		l.set(func(s *Status) { s.Quarantined, s.LastQuarantined = s.Quarantined+1, dst })
	}
	return nil
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
