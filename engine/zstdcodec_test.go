package engine

import (
	"bytes"
	"runtime"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestZstdCodecRoundTrip: the parts' codec writes frames any zstd reader
// decodes and reads them back, and its encoder allocates a history of
// its small window, not the 16 MiB of the level's default one.
func TestZstdCodecRoundTrip(t *testing.T) {
	var c zstdCodec
	src := bytes.Repeat([]byte(`{"event_id":"evt-000042","store_id":"s17","amount":"12.50"}`), 5000)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	frame, err := c.Encode(nil, src)
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 6<<20 {
		t.Fatalf("the first Encode allocated %d bytes", n)
	}
	if len(frame) >= len(src)/10 {
		t.Fatalf("%d bytes compressed to %d", len(src), len(frame))
	}
	d, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, decode := range []func([]byte) ([]byte, error){
		func(f []byte) ([]byte, error) { return d.DecodeAll(f, nil) },
		func(f []byte) ([]byte, error) { return c.Decode(nil, f) },
	} {
		got, err := decode(frame)
		if err != nil || !bytes.Equal(got, src) {
			t.Fatalf("decoded %d bytes (%v), want the %d written", len(got), err, len(src))
		}
	}
}
