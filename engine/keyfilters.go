package engine

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
)

// Persisted dedupe filters (doc.go, "Dedupe"): Close writes each live
// slice's filter to a file under the key store, with the generation of
// the store's last change to the slice; Open loads a file whose
// generation is at least the slice's stamp in the store and scans only
// the slices without one. A missing, damaged or stale file costs a scan
// of its slice, never a wrong answer.

// keyFiltersDir is the folder of the filter files inside the key store.
const keyFiltersDir = "filters"

// Filter file layout: doc.go, "Dedupe". These bytes may never change.
const (
	keyFilterMagic  = "OFDDFLT1"
	keyFilterHeader = 60
)

var (
	keysMetaGen     = []byte{keysPrefixMeta, 'g', 'e', 'n'} // → last generation (8)
	keysStampPrefix = []byte{keysPrefixMeta, 'f'}           // 'm' 'f' | slice start (8) → generation (8), slice length (8)
	castagnoli      = crc32.MakeTable(crc32.Castagnoli)
)

func keysStampKey(start int64) []byte {
	b := make([]byte, len(keysStampPrefix)+8)
	copy(b, keysStampPrefix)
	encodeUS(b[len(keysStampPrefix):], start)
	return b
}

func (s *keyStore) filterPath(start int64) string {
	return filepath.Join(s.dir, keyFiltersDir, fmt.Sprintf("%016x.filter", uint64(start)^(1<<63)))
}

// readStamps reads the generation and the slices' stamps. ok is false if
// the store has no generation (written before the stamps) or a stamp of
// another slice length: then every slice is scanned and stamped again.
func (s *keyStore) readStamps() (ok bool, err error) {
	gen, ok, err := readMeta(s.db, keysMetaGen, "generation")
	if !ok || err != nil {
		return false, err
	}
	s.gen = gen
	upper := append([]byte(nil), keysStampPrefix...)
	upper[len(upper)-1]++
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: keysStampPrefix, UpperBound: upper})
	if err != nil {
		return false, err
	}
	ok = true
	for it.First(); it.Valid(); it.Next() {
		kb, v := it.Key(), it.Value()
		if len(kb) != len(keysStampPrefix)+8 || len(v) != 16 {
			_ = it.Close()
			return false, fmt.Errorf("stamp %x of %d bytes with a value of %d, want %d and 16", kb, len(kb), len(v), len(keysStampPrefix)+8)
		}
		if int64(binary.BigEndian.Uint64(v[8:])) != s.sliceLen {
			ok = false
		}
		s.stamps[decodeUS(kb[len(keysStampPrefix):])] = binary.BigEndian.Uint64(v)
	}
	if err := it.Close(); err != nil {
		return false, err
	}
	return ok, nil
}

// stamp adds to wb the store's next generation and its stamp on each
// slice in starts.
func (s *keyStore) stamp(wb *pebble.Batch, starts []int64) (uint64, error) {
	gen := s.gen + 1
	val := make([]byte, 16)
	binary.BigEndian.PutUint64(val, gen)
	if err := wb.Set(keysMetaGen, val[:8], nil); err != nil {
		return 0, err
	}
	binary.BigEndian.PutUint64(val[8:], uint64(s.sliceLen))
	for _, start := range starts {
		if err := wb.Set(keysStampKey(start), val, nil); err != nil {
			return 0, err
		}
	}
	return gen, nil
}

// restamp replaces every stamp by one of the next generation on each
// slice held, after a scan of the whole store.
func (s *keyStore) restamp() error {
	wb := s.db.NewBatch()
	defer wb.Close()
	upper := append([]byte(nil), keysStampPrefix...)
	upper[len(upper)-1]++
	if err := wb.DeleteRange(keysStampPrefix, upper, nil); err != nil {
		return err
	}
	starts := make([]int64, len(s.slices))
	for i, sl := range s.slices {
		starts[i] = sl.start
	}
	gen, err := s.stamp(wb, starts)
	if err != nil {
		return err
	}
	if err := wb.Commit(pebble.Sync); err != nil {
		return err
	}
	clear(s.stamps)
	for _, start := range starts {
		s.stamps[start] = gen
	}
	s.gen = gen
	return nil
}

// loadFilter reads the filter file of the slice starting at start into a
// new slice, and reports whether it could: a file that is missing,
// damaged, of another slice length or filter size, or older than the
// slice's stamp is not used.
func (s *keyStore) loadFilter(start int64) (bool, error) {
	f, err := os.Open(s.filterPath(start))
	if err != nil {
		return false, nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, nil
	}
	size := fi.Size()
	head := make([]byte, keyFilterHeader)
	if size < keyFilterHeader+4 {
		return false, nil
	}
	if _, err := io.ReadFull(f, head); err != nil || string(head[:8]) != keyFilterMagic {
		return false, nil
	}
	u := func(off int) int64 { return int64(binary.BigEndian.Uint64(head[off:])) }
	nMin := int64(binary.BigEndian.Uint32(head[56:]))
	if u(8) != start || u(16) != s.sliceLen || uint64(u(24)) < s.stamps[start] || !s.filterSize(u(48)) ||
		size != keyFilterHeader+16*nMin+u(48)+4 {
		return false, nil
	}
	mins := make([]byte, 16*nMin)
	if _, err := io.ReadFull(f, mins); err != nil {
		return false, nil
	}
	bf, err := newBlockedBloom(u(48))
	if err != nil {
		return false, err
	}
	bf.holding(u(32)) // before its pages are first written
	sum := make([]byte, 4)
	if _, err := io.ReadFull(f, bf.mem); err != nil {
		bf.free()
		return false, nil
	}
	if _, err := io.ReadFull(f, sum); err != nil {
		bf.free()
		return false, nil
	}
	crc := crc32.Update(crc32.Update(crc32.Checksum(head, castagnoli), castagnoli, mins), castagnoli, bf.mem)
	if crc != binary.BigEndian.Uint32(sum) {
		bf.free()
		return false, nil
	}
	sl := &keySlice{start: start, maxUS: u(40), keys: u(32), filter: bf}
	sl.saved = uint64(u(24))
	if err := s.insertSlice(sl); err != nil {
		bf.free()
		return false, err
	}
	for i := int64(0); i < nMin; i++ {
		m, c := int64(binary.BigEndian.Uint64(mins[16*i:])), int64(binary.BigEndian.Uint64(mins[16*i+8:]))
		s.minutes[m] += c
		s.held += c
	}
	return true, nil
}

// filterSize tells whether a filter file's filter size is one a slice's
// filter takes: filterTopBytes or one of its halves, or the whole share
// in blocks, the only size before filters were sized by their keys.
func (s *keyStore) filterSize(b int64) bool {
	if b == s.shareBytes() {
		return true
	}
	t := s.filterTopBytes()
	for range keysFilterHalvings {
		if b == t {
			return true
		}
		t /= 2
	}
	return b == t
}

// saveFilters writes the filter file of each live slice changed since
// its file was written, and removes the files of other slices. A file is
// written under a temporary name and renamed: a torn file fails its
// checksum at the next Open, which then scans its slice.
func (s *keyStore) saveFilters() error {
	dir := filepath.Join(s.dir, keyFiltersDir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	live := map[string]bool{}
	for _, sl := range s.slices {
		path := s.filterPath(sl.start)
		live[filepath.Base(path)] = true
		gen := s.stamps[sl.start]
		if gen == 0 || sl.saved >= gen {
			continue
		}
		if err := s.writeFilter(path, sl, gen); err != nil {
			return err
		}
		sl.saved = gen
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, ent := range ents {
		if !live[ent.Name()] {
			if err := os.Remove(filepath.Join(dir, ent.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *keyStore) writeFilter(path string, sl *keySlice, gen uint64) error {
	var mins []byte
	for m, c := range s.minutes {
		if s.sliceOf(m) == sl.start {
			mins = binary.BigEndian.AppendUint64(mins, uint64(m))
			mins = binary.BigEndian.AppendUint64(mins, uint64(c))
		}
	}
	head := make([]byte, keyFilterHeader)
	copy(head, keyFilterMagic)
	for i, v := range []int64{sl.start, s.sliceLen, int64(gen), sl.keys, sl.maxUS, sl.filter.bytes()} {
		binary.BigEndian.PutUint64(head[8+8*i:], uint64(v))
	}
	binary.BigEndian.PutUint32(head[56:], uint32(len(mins)/16))
	crc := crc32.Update(crc32.Update(crc32.Checksum(head, castagnoli), castagnoli, mins), castagnoli, sl.filter.mem)
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	for _, b := range [][]byte{head, mins, sl.filter.mem, binary.BigEndian.AppendUint32(nil, crc)} {
		if _, err := f.Write(b); err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
			return err
		}
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
