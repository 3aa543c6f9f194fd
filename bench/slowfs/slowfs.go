// Package slowfs is the slow disk of offload's fault harness
// (bench/harness, docs/RELIABILITY.md): a Pebble file system whose every
// fsync of a file it opened for writing waits a set time first. `offload
// run` puts its WAL on one when FsyncDelayEnv is set.
package slowfs

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// FsyncDelayEnv is the variable the harness's slow-disk scenario sets
// (a duration such as 25ms) on the daemon it starts.
const FsyncDelayEnv = "OFFLOAD_FAULT_FSYNC_DELAY"

// FromEnv returns the WAL's file system: the operating system's, or, when
// FsyncDelayEnv is set, one whose every fsync waits that long first,
// which it logs as a warning.
func FromEnv(log *slog.Logger) (vfs.FS, error) {
	v := os.Getenv(FsyncDelayEnv)
	if v == "" {
		return vfs.Default, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return nil, fmt.Errorf("%s=%q: want a duration such as 20ms", FsyncDelayEnv, v)
	}
	log.Warn("fault injection: every WAL fsync delayed", "delay", d, "variable", FsyncDelayEnv)
	return New(vfs.Default, d), nil
}

// New returns fs with every fsync of the files it opens for writing
// delayed by delay.
func New(fs vfs.FS, delay time.Duration) vfs.FS { return slowFS{FS: fs, delay: delay} }

// slowFS delays every fsync of the files it opens for writing.
type slowFS struct {
	vfs.FS
	delay time.Duration
}

func (fs slowFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return slowFile{File: f, delay: fs.delay}, nil
}

func (fs slowFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.wrap(fs.FS.Create(name, c))
}

func (fs slowFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return fs.wrap(fs.FS.OpenReadWrite(name, c, opts...))
}

func (fs slowFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.wrap(fs.FS.ReuseForWrite(oldname, newname, c))
}

func (fs slowFS) OpenDir(name string) (vfs.File, error) { return fs.wrap(fs.FS.OpenDir(name)) }

type slowFile struct {
	vfs.File
	delay time.Duration
}

func (f slowFile) Sync() error {
	time.Sleep(f.delay)
	return f.File.Sync()
}

func (f slowFile) SyncData() error {
	time.Sleep(f.delay)
	return f.File.SyncData()
}

func (f slowFile) SyncTo(length int64) (bool, error) {
	time.Sleep(f.delay)
	return f.File.SyncTo(length)
}
