package engine

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestKeySliceFreezes: once the newest key is ten minutes past a slice's end,
// each commit builds one range's fuse filter of it and gives back the
// Bloom filter's pages that range used, then the whole Bloom filter; every
// key stays found through the freeze, keys added during and after it
// too; a fresh id that matches a frozen filter reads one bucket, not six;
// the frozen filters are written at Close and read back at Open, and a
// damaged file or a crash costs a scan and a new freeze, never a key.
func TestKeySliceFreezes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), KeysDir)
	window := int64(24 * time.Hour / time.Microsecond)
	const memory = 96 << 20 // 16 MiB a slice: 8M keys at 16 bits
	open := func() *keyStore {
		t.Helper()
		s, err := openKeyStore(dir, window, memory, time.Now, quietLogger())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var keys []keyTime
	commit := func(s *keyStore, from time.Time, n int, step time.Duration) {
		t.Helper()
		batch := make([]keyTime, n)
		for i := range batch {
			batch[i] = keyTime{keyOf(fmt.Sprint(from, "/", len(keys)+i)), from.Add(time.Duration(i) * step).UnixMicro()}
		}
		keys = append(keys, batch...)
		if err := s.commit(batch, math.MinInt64, s.seq+1); err != nil {
			t.Fatal(err)
		}
	}
	// check looks up every key, or every fifth between the states that
	// matter most, and every key added after the first 600,000.
	check := func(s *keyStore, what string) {
		t.Helper()
		stride := 5
		if what == "frozen" || what == "reopened" || what == "frozen again" {
			stride = 1
		}
		for i, kt := range keys {
			if i%stride != 0 && i < 600_000 {
				continue
			}
			if found, err := s.contains(kt.k, kt.us, math.MinInt64); err != nil || !found {
				t.Fatalf("%s: key at %s not found (%v)", what, time.UnixMicro(kt.us).UTC(), err)
			}
		}
	}
	s := open()
	slice0 := t0.Add(-12 * time.Hour) // 00:00 – 06:00
	commit(s, slice0, 600_000, 30*time.Millisecond)
	frozen := func(s *keyStore) *keySlice {
		t.Helper()
		sl, err := s.slice(slice0.UnixMicro())
		if err != nil {
			t.Fatal(err)
		}
		return sl
	}
	sl := frozen(s)
	if sl.frozen != nil || sl.keys != 600_000 {
		t.Fatalf("before any key ten minutes past its end: frozen %v, keys %d", sl.frozen != nil, sl.keys)
	}
	bloom := s.memory()

	// 06:05, five minutes past its end: not yet.
	commit(s, slice0.Add(6*time.Hour+5*time.Minute), 1, time.Second)
	if sl.frozen != nil {
		t.Fatal("frozen five minutes past its end")
	}
	// 07:00: the slice's end is an hour behind; three ranges of ~200k.
	commit(s, slice0.Add(7*time.Hour), 100, time.Second)
	if sl.frozen == nil || len(sl.frozen.built) != 1 || sl.frozen.ranges != 3 || sl.filter == nil {
		t.Fatalf("after the first commit past it: %+v", sl.frozen)
	}
	if sl.frozen.dropped < int(sl.filter.bytes())/4 {
		t.Fatalf("%d of the Bloom filter's %d bytes given back after a range of three", sl.frozen.dropped, sl.filter.bytes())
	}
	check(s, "one range built")
	commit(s, slice0.Add(time.Hour), 1000, time.Second) // late keys, while it freezes
	check(s, "late keys during the freeze")
	commit(s, slice0.Add(7*time.Hour+time.Minute), 100, time.Second)
	if sl.filter != nil || len(sl.frozen.built) != 3 {
		t.Fatalf("after three commits: Bloom filter %v, %d ranges built", sl.filter != nil, len(sl.frozen.built))
	}
	commit(s, slice0.Add(2*time.Hour), 1000, time.Second) // late keys, once frozen
	check(s, "frozen")
	if sl.bytes() > bloom/8 {
		t.Fatalf("the frozen slice's filters take %d bytes, its Bloom filter took %d", sl.bytes(), bloom)
	}
	frozenBytes := sl.frozen.used
	if bits := float64(frozenBytes*8) / 600_000; bits > 13 {
		t.Fatalf("the frozen filters take %.1f bits a key", bits)
	}

	// Fresh ids: a match of the frozen filter reads one bucket.
	readsBefore := s.lookups.Load()
	var matches int64
	for i := range 200_000 {
		k := keyOf(fmt.Sprint("fresh/", i))
		p := []sliceProbe{{sl: sl}}
		if s.probe(p, k); p[0].ok {
			matches++
			if p[0].code == s.many() {
				t.Fatalf("a fresh id matched with the code that reads every bucket")
			}
		}
		if found, err := s.contains(k, slice0.UnixMicro(), math.MinInt64); err != nil || found {
			t.Fatalf("fresh id %d found (%v)", i, err)
		}
	}
	if matches == 0 || matches > 200_000/256*2 {
		t.Fatalf("%d of 200,000 fresh ids matched the frozen filters, want about %d", matches, 200_000/256)
	}
	if reads := s.lookups.Load() - readsBefore; reads > matches+200_000/100 {
		t.Fatalf("%d reads for 200,000 fresh ids, %d of which matched the frozen filters", reads, matches)
	}

	// Close writes it frozen; Open reads it so.
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	s = open()
	sl = frozen(s)
	if sl.saved == 0 || sl.filter != nil || sl.frozen == nil || sl.frozen.used != frozenBytes || len(sl.frozen.late) == 0 {
		t.Fatalf("reopened: saved %d, Bloom filter %v, frozen %+v", sl.saved, sl.filter != nil, sl.frozen)
	}
	check(s, "reopened")

	// A damaged file: the slice is scanned, then frozen again.
	path := s.filterPath(sl.start)
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/3] ^= 0x10
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	s = open()
	if sl = frozen(s); sl.saved != 0 || sl.frozen != nil {
		t.Fatalf("a damaged file was used")
	}
	check(s, "damaged file, scanned")
	commit(s, slice0.Add(7*time.Hour+2*time.Minute), 10, time.Second)
	check(s, "scanned, one range built again")

	// A crash half way through the freeze: the next Open scans what
	// changed since the last clean stop and freezes it again.
	for _, sl := range s.slices {
		sl.free()
	}
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
	s = open()
	check(s, "after a crash")
	for range 3 {
		commit(s, slice0.Add(7*time.Hour+3*time.Minute), 10, time.Second)
	}
	if sl = frozen(s); sl.filter != nil {
		t.Fatal("not frozen again after three commits")
	}
	check(s, "frozen again")

	// The horizon past the slice frees it.
	if err := s.commit(nil, slice0.Add(6*time.Hour).UnixMicro(), s.seq+1); err != nil {
		t.Fatal(err)
	}
	for _, sl := range s.slices {
		if sl.start == slice0.UnixMicro() {
			t.Fatal("the slice below the horizon is still held")
		}
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
}

// TestKeySliceFreezeWithinMemory: the filters stay within DedupeMemory.
// A slice holding more keys than its Bloom filter is sized for is not
// frozen (its fuse filters would be larger); a frozen slice whose late
// keys make it larger than its Bloom filter gets one back, filled from
// the store, and is frozen again, its late keys then in its fuse filters,
// until it holds more keys than its Bloom filter is sized for; every key
// stays found.
func TestKeySliceFreezeWithinMemory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), KeysDir)
	window := int64(24 * time.Hour / time.Microsecond)
	s, err := openKeyStore(dir, window, minDedupeMemory, time.Now, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	var keys []keyTime
	commit := func(from time.Time, n int) {
		t.Helper()
		batch := make([]keyTime, n)
		for i := range batch {
			batch[i] = keyTime{keyOf(fmt.Sprint(from, "/", len(keys)+i)), from.Add(time.Duration(i) * 100 * time.Millisecond).UnixMicro()}
		}
		keys = append(keys, batch...)
		if err := s.commit(batch, math.MinInt64, s.seq+1); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string) {
		t.Helper()
		for _, kt := range keys {
			if found, err := s.contains(kt.k, kt.us, math.MinInt64); err != nil || !found {
				t.Fatalf("%s: key at %s not found (%v)", what, time.UnixMicro(kt.us).UTC(), err)
			}
		}
	}
	slice := func(at time.Time) *keySlice {
		sl, err := s.slice(s.sliceOf(at.UnixMicro()))
		if err != nil {
			t.Fatal(err)
		}
		return sl
	}
	small, large := t0.Add(-18*time.Hour), t0.Add(-12*time.Hour) // 18:00 and 00:00 slices
	capacity := s.filterBytes * 8 / dedupeBitsPerKey
	commit(small, int(capacity/2))
	commit(large, int(capacity*3/2))
	commit(t0, 10) // 12:00: both are closed
	if sl := slice(small); sl.filter != nil || sl.frozen == nil {
		t.Fatalf("the slice of %d keys is not frozen", sl.keys)
	}
	if sl := slice(large); sl.frozen != nil {
		t.Fatalf("the slice of %d keys, above the %d its Bloom filter is sized for, was frozen", sl.keys, capacity)
	}
	check("frozen")
	for sl := slice(small); sl.frozen != nil; {
		commit(small.Add(time.Hour), 2000) // late keys
		if sl.bytes() > s.filterBytes {
			t.Fatalf("the frozen slice takes %d bytes, more than its Bloom filter's %d", sl.bytes(), s.filterBytes)
		}
		if len(keys) > 10*int(capacity) {
			t.Fatal("never thawed")
		}
	}
	sl := slice(small)
	if sl.filter == nil || sl.bytes() != s.filterBytesRounded() {
		t.Fatalf("thawed: Bloom filter %v, %d bytes", sl.filter != nil, sl.bytes())
	}
	check("thawed")
	commit(t0.Add(time.Minute), 10)
	if sl.frozen != nil {
		t.Fatalf("the thawed slice of %d keys was frozen again", sl.keys)
	}
}
