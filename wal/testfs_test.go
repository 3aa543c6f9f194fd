package wal

import (
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// injectFS is errorfs.Wrap that also covers recycled files. Pebble reuses
// old log files through FS.ReuseForWrite, and errorfs.FS returns that file
// unwrapped (pebble v2.1.7), so writes and syncs to a recycled log would
// bypass the injector: crash points and injected sync errors would miss
// every log after the first recycling.
type injectFS struct {
	*errorfs.FS
	inj errorfs.Injector
}

func wrapFS(fs vfs.FS, inj errorfs.Injector) vfs.FS {
	return injectFS{FS: errorfs.Wrap(fs, inj), inj: inj}
}

// ReuseForWrite implements vfs.FS, wrapping the reused file.
func (fs injectFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	if err != nil {
		return nil, err
	}
	return &injectFile{File: f, name: newname, inj: fs.inj}, nil
}

// injectFile calls the injector before every write-side operation of a
// recycled file, naming it by its new name.
type injectFile struct {
	vfs.File
	name string
	inj  errorfs.Injector
}

func (f *injectFile) op(kind errorfs.OpKind, off int64) error {
	return f.inj.MaybeError(errorfs.Op{Kind: kind, Path: f.name, Offset: off})
}

func (f *injectFile) Write(p []byte) (int, error) {
	if err := f.op(errorfs.OpFileWrite, 0); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *injectFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.op(errorfs.OpFileWriteAt, off); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f *injectFile) Preallocate(off, n int64) error {
	if err := f.op(errorfs.OpFilePreallocate, off); err != nil {
		return err
	}
	return f.File.Preallocate(off, n)
}

func (f *injectFile) Sync() error {
	if err := f.op(errorfs.OpFileSync, 0); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *injectFile) SyncData() error {
	if err := f.op(errorfs.OpFileSyncData, 0); err != nil {
		return err
	}
	return f.File.SyncData()
}

func (f *injectFile) SyncTo(length int64) (bool, error) {
	if err := f.op(errorfs.OpFileSyncTo, length); err != nil {
		return false, err
	}
	return f.File.SyncTo(length)
}

func (f *injectFile) Close() error {
	if err := f.op(errorfs.OpFileClose, 0); err != nil {
		return err
	}
	return f.File.Close()
}
