package wal

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage"
	"github.com/cockroachdb/pebble/v2/sstable/blob"
	"github.com/cockroachdb/pebble/v2/sstable/block"
)

// Blob files: where Pebble keeps the entries' values once value
// separation has moved them out of the sstables (doc.go, "Blob files").
// Pebble (v2.1.7) names a damaged sstable in its corruption errors but not
// a damaged blob file, and it panics when it cannot open a blob file
// (DB.reportCorruption has no case for a blob file without metadata). So
// the WAL maps an entry's blob file to its path itself, and checks that
// every blob file opens before anything reads from one.

// valueSeparationPolicy is Pebble's value separation policy for the WAL,
// as measured in the drain (docs/PERFORMANCE.md), with one change: blob
// file rewrites, which copy the values still referenced out of a file
// that is mostly garbage, wait until Verify has found no damage, and stop
// once a read meets damage in a blob file. A rewrite that meets a damaged
// block panics in Pebble v2.1.7 (it reports the damage without the file's
// metadata), in a compaction, which no caller can recover: after a
// restart the WAL would panic again before the verify at start could
// report the damage.
func (w *WAL) valueSeparationPolicy() pebble.ValueSeparationPolicy {
	p := pebble.ValueSeparationPolicy{
		Enabled:               true,
		MinimumSize:           valueSeparationMinimum,
		MaxBlobReferenceDepth: 10,
		RewriteMinimumAge:     time.Minute,
		TargetGarbageRatio:    0.5,
	}
	if !w.blobRewrites.Load() {
		p.TargetGarbageRatio = 1 // no rewrites
	}
	return p
}

// blobFile is a blob file the current Pebble version references.
type blobFile struct {
	// id is the blob file ID the sstables' references carry; num is the
	// disk file number, the file's name. They differ once Pebble has
	// rewritten the file to drop its garbage.
	id, num uint64
	path    string
	// meta is the file's object in Pebble's storage; found is false when
	// the file is missing from the directory.
	meta  objstorage.ObjectMetadata
	found bool
}

// liveBlobFiles lists the blob files the current Pebble version
// references.
func (w *WAL) liveBlobFiles() []blobFile {
	metas := map[uint64]objstorage.ObjectMetadata{}
	provider := w.db.ObjProvider()
	for _, m := range provider.List() {
		if m.FileType.String() == "blob" {
			metas[uint64(m.DiskFileNum)] = m
		}
	}
	// The current version is Pebble's only view of the mapping from blob
	// file IDs to files (the manifest's); it is referenced while it is
	// read, for a compaction may install a newer one meanwhile.
	v := w.db.DebugCurrentVersion()
	v.Ref()
	defer v.Unref()
	var out []blobFile
	for f := range v.BlobFiles.All() {
		bf := blobFile{id: uint64(f.FileID), num: uint64(f.Physical.FileNum)}
		bf.meta, bf.found = metas[bf.num]
		if bf.found {
			bf.path = provider.Path(bf.meta)
		} else {
			bf.path = w.opts.FS.PathJoin(w.dir, f.Physical.FileNum.String()+".blob")
		}
		out = append(out, bf)
	}
	slices.SortFunc(out, func(a, b blobFile) int { return cmp.Compare(a.num, b.num) })
	return out
}

// blobPath returns the path of the blob file that sstables reference as
// id, or a description of it when the current version no longer has it.
func (w *WAL) blobPath(id uint64) string {
	for _, f := range w.liveBlobFiles() {
		if f.id == id {
			return f.path
		}
	}
	return fmt.Sprintf("blob file %d (no longer referenced)", id)
}

// checkBlobFiles opens every blob file the current Pebble version
// references, as Pebble would (its footer, then its index block), and
// returns the ones that cannot be opened, by blob file ID, each with a
// *CorruptionError naming its path.
func (w *WAL) checkBlobFiles() map[uint64]*CorruptionError {
	var bad map[uint64]*CorruptionError
	for _, f := range w.liveBlobFiles() {
		err := checkBlobFile(w.db.ObjProvider(), f)
		if err == nil {
			continue
		}
		if bad == nil {
			bad = map[uint64]*CorruptionError{}
		}
		bad[f.id] = &CorruptionError{Partition: -1, FirstOffset: -1, Record: -1, File: f.path,
			Reason: "blob file " + f.path + " cannot be opened", Err: err}
	}
	return bad
}

// checkBlobFile opens f with Pebble's own blob file reader.
func checkBlobFile(provider objstorage.Provider, f blobFile) error {
	if !f.found {
		return fmt.Errorf("%w: the file is missing", pebble.ErrCorruption)
	}
	ctx := context.Background()
	r, err := provider.OpenForReading(ctx, f.meta.FileType, f.meta.DiskFileNum, objstorage.OpenOptions{MustExist: true})
	if err != nil {
		return err
	}
	fr, err := blob.NewFileReader(ctx, r, blob.FileReaderOptions{})
	if err != nil {
		return errors.Join(err, r.Close())
	}
	h, err := fr.ReadIndexBlock(ctx, block.NoReadEnv, nil)
	if err == nil {
		h.Release()
	}
	return errors.Join(err, fr.Close())
}

// value returns the value of the entry or meta at it, an iterator of
// w.db. When the value lies in a blob file it cannot be read from, the
// error is a *CorruptionError naming the entry, the blob file's path and
// the value's place in it. Pebble is not asked to read from a blob file
// that cannot be opened (w.unreadable).
func (w *WAL) value(it *pebble.Iterator) ([]byte, error) {
	lv := it.LazyValue()
	if lv.Fetcher == nil {
		return it.ValueAndErr()
	}
	id := uint64(lv.Fetcher.BlobFileID)
	if bad, ok := w.unreadable[id]; ok {
		return nil, blobCorruption(it.Key(), lv, bad.File, bad.Err)
	}
	v, err := it.ValueAndErr()
	if err != nil && pebble.IsCorruptionError(err) && pebble.ExtractDataCorruptionInfo(err) == nil {
		w.blobRewrites.Store(false)
		return nil, blobCorruption(it.Key(), lv, w.blobPath(id), err)
	}
	return v, err
}

// blobCorruption describes damage in blob file path that makes the value
// of the entry at key (whose reference is lv) unreadable.
func blobCorruption(key []byte, lv pebble.LazyValue, path string, err error) *CorruptionError {
	ce := &CorruptionError{Partition: -1, FirstOffset: -1, Record: -1, File: path, Err: err}
	where := "blob file " + path
	if len(lv.ValueOrHandle) > 0 {
		h := blob.DecodeHandleSuffix(lv.ValueOrHandle)
		where = fmt.Sprintf("%s (value %d of block %d)", where, h.ValueID, h.BlockID)
	}
	ce.Reason = "pebble reports damaged data in " + where
	if prefix, tp, first, ok := decodeKey(key); ok && prefix == prefixEntry {
		ce.Topic, ce.Partition, ce.FirstOffset = tp.TopicKey(), tp.Partition, first
		ce.Reason = "value unreadable in " + where
	}
	return ce
}

// skipValue puts it, whose value at key could not be read, back at key
// with the error cleared, so that Next goes on to the key after it: keys
// still read where a value does not.
func skipValue(it *pebble.Iterator, key []byte) {
	it.SeekGE(bytes.Clone(key))
}
