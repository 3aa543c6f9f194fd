package engine

import (
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go/format"
)

// zstdWindow is the window of the parts' zstd encoders. parquet-go
// compresses each page on its own, and a page is cut at its 256 KiB
// buffer, so matches never reach further back than that: a larger window
// only makes each pooled encoder hold a larger history. At zstd's default
// level (an 8 MiB window) the encoders held 32 MiB of the appliance's
// live heap during a drain (docs/PERFORMANCE.md, "Drain").
const zstdWindow = 1 << 20

// zstdCodec is parquet-go's zstd codec (compress/zstd) with a window of
// zstdWindow: the same frames for any reader, at the same level.
type zstdCodec struct {
	encoders sync.Pool // of *zstd.Encoder
	decoders sync.Pool // of *zstd.Decoder
}

func (c *zstdCodec) String() string { return "ZSTD" }

func (c *zstdCodec) CompressionCodec() format.CompressionCodec { return format.Zstd }

// Encode writes the zstd frame of src to dst[:0].
func (c *zstdCodec) Encode(dst, src []byte) ([]byte, error) {
	e, _ := c.encoders.Get().(*zstd.Encoder)
	if e == nil {
		var err error
		e, err = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithWindowSize(zstdWindow), zstd.WithZeroFrames(true), zstd.WithEncoderCRC(false))
		if err != nil {
			return dst[:0], err
		}
	}
	defer c.encoders.Put(e)
	return e.EncodeAll(src, dst[:0]), nil
}

// Decode writes the bytes of the zstd frame src to dst[:0].
func (c *zstdCodec) Decode(dst, src []byte) ([]byte, error) {
	d, _ := c.decoders.Get().(*zstd.Decoder)
	if d == nil {
		var err error
		if d, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1)); err != nil {
			return dst[:0], err
		}
	}
	defer c.decoders.Put(d)
	return d.DecodeAll(src, dst[:0])
}
