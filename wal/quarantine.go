package wal

import (
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// The quarantine folder a repair writes, and its manifest (see "Repair" in
// doc.go).

// ManifestFile is the name of the manifest in each quarantine folder.
const ManifestFile = "manifest.json"

// quarantinePrefix starts the name of each repair's quarantine folder
// (wal-<UTC time>); ReadQuarantine counts only these.
const quarantinePrefix = "wal-"

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
