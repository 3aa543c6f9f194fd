package engine

import (
	"encoding/binary"
	"errors"
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

// Filter file layouts: doc.go, "Dedupe". These bytes may never change.
const (
	keyFilterMagic  = "OFDDFLT1" // a Bloom filter
	frozenMagic     = "OFDDFRZ1" // a frozen slice's filters
	keyFilterHeader = 60
	frozenPartHead  = 16 // a range's or a late filter's own header
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
	v, closer, err := s.db.Get(keysMetaGen)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if len(v) != 8 {
		closer.Close()
		return false, fmt.Errorf("generation of %d bytes, want 8", len(v))
	}
	s.gen = binary.BigEndian.Uint64(v)
	closer.Close()
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
	if _, err := io.ReadFull(f, head); err != nil || (string(head[:8]) != keyFilterMagic && string(head[:8]) != frozenMagic) {
		return false, nil
	}
	u := func(off int) int64 { return int64(binary.BigEndian.Uint64(head[off:])) }
	nMin := int64(binary.BigEndian.Uint32(head[56:]))
	if u(8) != start || u(16) != s.sliceLen || uint64(u(24)) < s.stamps[start] || size < keyFilterHeader+16*nMin+4 {
		return false, nil
	}
	mins := make([]byte, 16*nMin)
	if _, err := io.ReadFull(f, mins); err != nil {
		return false, nil
	}
	sl := &keySlice{start: start, maxUS: u(40), keys: u(32), saved: uint64(u(24))}
	crc := crc32.Update(crc32.Checksum(head, castagnoli), castagnoli, mins)
	var ok bool
	if string(head[:8]) == frozenMagic {
		ok, err = s.readFrozen(f, head, size-keyFilterHeader-16*nMin-4, sl, &crc)
	} else {
		ok, err = s.readBloom(f, u(48), size-keyFilterHeader-16*nMin-4, sl, &crc)
	}
	if err != nil || !ok {
		sl.free()
		return false, err
	}
	sum := make([]byte, 4)
	if _, err := io.ReadFull(f, sum); err != nil || crc != binary.BigEndian.Uint32(sum) {
		sl.free()
		return false, nil
	}
	if err := s.insertSlice(sl); err != nil {
		sl.free()
		return false, err
	}
	for i := int64(0); i < nMin; i++ {
		m, c := int64(binary.BigEndian.Uint64(mins[16*i:])), int64(binary.BigEndian.Uint64(mins[16*i+8:]))
		s.minutes[m] += c
		s.held += c
	}
	return true, nil
}

// readBloom reads a Bloom filter of size bytes into sl, if the filter
// body left in the file is that size and it is the size of a slice's
// filter, and updates crc.
func (s *keyStore) readBloom(f io.Reader, size, left int64, sl *keySlice, crc *uint32) (bool, error) {
	if size != s.filterBytesRounded() || left != size {
		return false, nil
	}
	bf, err := newBlockedBloom(s.filterBytes)
	if err != nil {
		return false, err
	}
	bf.holding(sl.keys) // before its pages are first written
	if _, err := io.ReadFull(f, bf.mem); err != nil {
		bf.free()
		return false, nil
	}
	*crc = crc32.Update(*crc, castagnoli, bf.mem)
	sl.filter = bf
	return true, nil
}

// readFrozen reads a frozen slice's filters, left bytes in the file, into
// sl, if they are laid out as this store writes them, and updates crc.
func (s *keyStore) readFrozen(f io.Reader, head []byte, left int64, sl *keySlice, crc *uint32) (bool, error) {
	ranges, code, fp, nLate := int64(binary.BigEndian.Uint32(head[48:])), uint(head[52]), uint(head[53]), int(head[54])
	if ranges < 1 || code != s.code || fp != freezeFingerprint || left < ranges*frozenPartHead {
		return false, nil
	}
	fz := &frozenFilter{ranges: int(ranges)}
	sl.frozen = fz
	part := make([]byte, frozenPartHead)
	next := func() bool {
		if _, err := io.ReadFull(f, part); err != nil {
			return false
		}
		*crc = crc32.Update(*crc, castagnoli, part)
		left -= frozenPartHead
		return true
	}
	fill := func(b []byte) bool {
		if _, err := io.ReadFull(f, b); err != nil {
			return false
		}
		*crc = crc32.Update(*crc, castagnoli, b)
		left -= int64(len(b))
		return true
	}
	width := fp + code
	for range ranges {
		if !next() {
			return false, nil
		}
		segLen, segCount := binary.BigEndian.Uint32(part[8:]), binary.BigEndian.Uint32(part[12:])
		if segLen == 0 || segLen&(segLen-1) != 0 || segLen > 1<<18 || segCount == 0 || segCount > 1<<20 {
			return false, nil
		}
		n := int64(fuseBytes(int((segCount+2)*segLen), width))
		if n > left {
			return false, nil
		}
		cells, err := fz.cells(int(n), int(left))
		if err != nil {
			return false, err
		}
		if !fill(cells) {
			return false, nil
		}
		fz.built = append(fz.built, fuseFilter{seed: binary.BigEndian.Uint64(part), segLen: segLen, segCount: segCount,
			cells: cells, width: width, code: code})
	}
	for range nLate {
		if !next() {
			return false, nil
		}
		size, keys := int64(binary.BigEndian.Uint64(part)), int64(binary.BigEndian.Uint64(part[8:]))
		if size <= 0 || size%(8*bloomBlockWords) != 0 || size > left {
			return false, nil
		}
		bf, err := newBlockedBloom(size)
		if err != nil {
			return false, err
		}
		fz.late, fz.lateKeys = append(fz.late, bf), keys
		if !fill(bf.mem) {
			return false, nil
		}
	}
	return left == 0, nil
}

// filterBytesRounded is the size of a slice's filter as newBlockedBloom
// makes it.
func (s *keyStore) filterBytesRounded() int64 {
	return max(s.filterBytes/(8*bloomBlockWords), 1) * 8 * bloomBlockWords
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
		if gen == 0 || sl.saved >= gen || (sl.frozen != nil && sl.filter != nil) {
			// Unchanged, or half frozen: its file, if any, still holds
			// every key it held when written.
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
	for i, v := range []int64{sl.start, s.sliceLen, int64(gen), sl.keys, sl.maxUS} {
		binary.BigEndian.PutUint64(head[8+8*i:], uint64(v))
	}
	binary.BigEndian.PutUint32(head[56:], uint32(len(mins)/16))
	parts := [][]byte{head, mins}
	if fz := sl.frozen; fz != nil {
		copy(head, frozenMagic)
		binary.BigEndian.PutUint32(head[48:], uint32(fz.ranges))
		head[52], head[53], head[54] = byte(s.code), freezeFingerprint, byte(len(fz.late))
		for _, ff := range fz.built {
			part := binary.BigEndian.AppendUint64(nil, ff.seed)
			part = binary.BigEndian.AppendUint32(part, ff.segLen)
			part = binary.BigEndian.AppendUint32(part, ff.segCount)
			parts = append(parts, part, ff.cells)
		}
		for i, bf := range fz.late {
			keys := bf.bytes() * 8 / dedupeBitsPerKey
			if i == len(fz.late)-1 {
				keys = fz.lateKeys
			}
			part := binary.BigEndian.AppendUint64(nil, uint64(bf.bytes()))
			part = binary.BigEndian.AppendUint64(part, uint64(keys))
			parts = append(parts, part, bf.mem)
		}
	} else {
		copy(head, keyFilterMagic)
		binary.BigEndian.PutUint64(head[48:], uint64(sl.filter.bytes()))
		parts = append(parts, sl.filter.mem)
	}
	var crc uint32
	for _, b := range parts {
		crc = crc32.Update(crc, castagnoli, b)
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	for _, b := range append(parts, binary.BigEndian.AppendUint32(nil, crc)) {
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
