package record

import (
	"fmt"
	"runtime"

	"github.com/klauspost/compress/zstd"
)

// Bodies are stored compressed with zstd when that pays, in both engines;
// the req_body_enc and resp_body_enc columns say how each one is held. Rows
// written before SQLite's migration 0005 hold the bytes as captured and read
// as EncIdentity.
const (
	EncIdentity = 0 // the bytes as captured (up to Options.MaxBody)
	EncZstd     = 1 // one zstd frame of them
)

const (
	// CompressFrom is the smallest body worth compressing. Compressing costs
	// about 2 µs a body whatever its size up to a few KiB, an eighth of the
	// insert of a tracker request, whose bodies (100-520 bytes in the
	// example) would shrink by a few hundred bytes; from 1 KiB on, the
	// smaller row is cheaper to write by as much as compressing costs.
	CompressFrom = 1 << 10
	// EntropyFrom is where literals are entropy-coded too. Below it,
	// building Huffman and FSE tables costs more than the insert of a
	// tracker request itself and saves a few bytes per body; above it the
	// tables pay for themselves (a 100 KiB JSON body comes out 1.6 times
	// smaller than with matches alone).
	EntropyFrom = 8 << 10
	// maxDecoded bounds what one stored frame may decode to, far above any
	// MaxBody, so that a damaged or forged file cannot exhaust memory.
	maxDecoded = 1 << 30
)

// Codec compresses and decompresses bodies for one store; its encoders and
// decoder are safe for concurrent use and keep their state between calls.
type Codec struct {
	small, large *zstd.Encoder
	dec          *zstd.Decoder
}

func NewCodec() (*Codec, error) {
	// Up to four writers and readers at once; windows no longer than the
	// bodies that use them (a 1 MiB window compresses a 1 MiB body as well
	// as the default 8 MiB, in a third of the memory).
	n := min(runtime.GOMAXPROCS(0), 4)
	small, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(n),
		zstd.WithNoEntropyCompression(true), zstd.WithWindowSize(EntropyFrom), zstd.WithLowerEncoderMem(true))
	if err != nil {
		return nil, fmt.Errorf("body compressor: %w", err)
	}
	large, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(n),
		zstd.WithWindowSize(1<<20), zstd.WithLowerEncoderMem(true))
	if err != nil {
		return nil, fmt.Errorf("body compressor: %w", err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(n), zstd.WithDecoderMaxMemory(maxDecoded))
	if err != nil {
		return nil, fmt.Errorf("body decompressor: %w", err)
	}
	return &Codec{small: small, large: large, dec: dec}, nil
}

func (c *Codec) Close() {
	c.small.Close()
	c.large.Close()
	c.dec.Close()
}

// Compress returns what to store for data and how it is encoded: a zstd
// frame written into buf (which the caller reuses: the driver copies what it
// binds) when data is long enough and the frame is at most seven eighths of
// it, else data itself. A frame that saves less is not worth decoding on
// every read.
func (c *Codec) Compress(data, buf []byte) (stored []byte, enc int64, grown []byte) {
	if len(data) < CompressFrom {
		return data, EncIdentity, buf
	}
	e := c.small
	if len(data) >= EntropyFrom {
		e = c.large
	}
	buf = e.EncodeAll(data, buf[:0])
	if len(buf) > len(data)-len(data)/8 {
		return data, EncIdentity, buf
	}
	return buf, EncZstd, buf
}

// Decompress returns the body as captured from what a row holds. The result
// is newly allocated: it becomes the flow's, and rows are read concurrently.
func (c *Codec) Decompress(stored []byte, enc int64) ([]byte, error) {
	switch enc {
	case EncIdentity:
		return stored, nil
	case EncZstd:
		out, err := c.dec.DecodeAll(stored, nil)
		if err != nil {
			return nil, fmt.Errorf("decompress body: %w", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("body stored with encoding %d, which this phonehome does not know: upgrade phonehome", enc)
}
