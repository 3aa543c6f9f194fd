// Package durable writes files that a crash leaves either whole under
// their name or absent: written to a temporary file, fsync'd, renamed,
// and the directory fsync'd.
package durable

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFile writes path through path+".tmp" (created with perm), filled
// by write, fsync'd, renamed to path; then it fsyncs the directory. On an
// error nothing is left under either name: neither the temporary file nor
// a renamed file whose directory entry may not be durable.
func WriteFile(path string, perm fs.FileMode, write func(io.Writer) error) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return errors.Join(err, removeIfExists(tmp))
	}
	if err := Sync(filepath.Dir(path)); err != nil {
		return errors.Join(err, removeIfExists(path))
	}
	return nil
}

// Sync fsyncs the file or directory at path: a directory's makes a
// rename or a creation in it durable.
func Sync(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
