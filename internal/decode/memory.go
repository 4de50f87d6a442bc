package decode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"sync"
	"unsafe"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

// What decoding one request may cost in memory is a small multiple of
// Limits.MaxDecoded (L), whatever the request holds, bombs included:
//
//   - Decompressed output is at most L bytes in all (state.decoded). It is
//     read into a buffer that grows to the room left at most, never past it,
//     and that is sized at once from the size a gzip or zstd stream declares.
//     Decompressed text is decoded where it lies, not copied (owned).
//   - A decompressor's window is at most L too (deflate's is 32 KiB): zstd's
//     at most 8 MiB as well, the most RFC 9659 lets an HTTP content coding ask
//     of a decoder; brotli's at most 16 MiB by its format. A stream that asks
//     for more is refused before anything is allocated for it, noted as a
//     "window" limit.
//   - What the other layers copy out (text, JSON and XML strings, base64, hex
//     and percent-decoded bytes, a binary leaf's hex, the paths of values, the
//     parsers' own allocations per element or part) is charged, before it is
//     copied, to an allowance of another L (state.copied). A layer that does
//     not fit is not decoded (a string is then kept as it is, which costs
//     nothing more), and the limit is noted once as "decoded size".
//   - Values and opaque payloads are at most MaxValues each, and the walks
//     stop once the values are full.
//
// So the output is at most L, and what one request allocates is at most
// about 4 L: the decompressed bytes and the garbage of their growth (under
// 1.5 L), a window (up to L), the copies (L), and per-value bookkeeping. A
// Decoder keeps between requests only buffers of up to maxPooledBuf.

const (
	// maxPooledBuf is the largest buffer kept for reuse: bigger ones are
	// dropped, so that one large body does not pin its memory in a pool.
	maxPooledBuf = 256 << 10
	// maxPooledBufs is how many are kept.
	maxPooledBufs = 4
	// zstdMaxWindow is the largest zstd window accepted (RFC 9659).
	zstdMaxWindow = 8 << 20
)

// spend charges n bytes that a layer is about to copy out of what it decodes;
// false when they do not fit what is left of the allowance.
func (s *state) spend(n int) bool {
	if n > s.lim.MaxDecoded-s.copied {
		return false
	}
	s.copied += n
	return true
}

// overspent notes, once, that the copy allowance ran out at path.
func (s *state) overspent(path string) {
	if !s.spent {
		s.spent = true
		s.limit("decoded size", path)
	}
}

// spendAt is spend that notes the limit at path when n does not fit.
func (s *state) spendAt(n int, path string) bool {
	if s.spend(n) {
		return true
	}
	s.overspent(path)
	return false
}

// buffer returns an empty buffer of at least n bytes of capacity, reused
// when one is free.
func (s *state) buffer(n int) []byte {
	for i, b := range s.free {
		if cap(b) >= n {
			last := len(s.free) - 1
			s.free[i], s.free[last] = s.free[last], nil
			s.free = s.free[:last]
			return b[:0]
		}
	}
	return make([]byte, 0, n)
}

// release hands back a buffer nothing refers to any more. Only small ones
// are kept.
func (s *state) release(b []byte) {
	if cap(b) == 0 || cap(b) > maxPooledBuf || len(s.free) >= maxPooledBufs {
		return
	}
	s.free = append(s.free, b[:0])
}

// readAll reads r to its end, or to room bytes; over reports that r had more
// than room. The buffer grows to room bytes at most, never past it: one byte
// more, read aside, tells an output that fits from one that does not. size,
// what the output is thought to be (the size a stream declares; 0 when
// unknown), sizes the buffer at once.
func (s *state) readAll(r io.Reader, room, size int) (buf []byte, over bool, err error) {
	if size <= 0 {
		size = 4096
	} else {
		size = min(size, math.MaxInt-1) + 1 // and the read that finds the end
	}
	buf = s.buffer(max(1, min(size, room)))
	for idle := 0; idle < 100; {
		if len(buf) >= room {
			n, err := r.Read(s.probe[:])
			switch {
			case n > 0:
				return buf[:room], true, nil
			case err == io.EOF:
				return buf, false, nil
			case err != nil:
				return buf, false, err
			}
			idle++
			continue
		}
		end := min(cap(buf), room)
		if len(buf) == end {
			// Doubling leaves as much garbage as it keeps; past 1 MiB a
			// fourfold step leaves a third.
			next := 2 * cap(buf)
			if cap(buf) >= 1<<20 {
				next = 4 * cap(buf)
			}
			grown := make([]byte, len(buf), min(next, room))
			copy(grown, buf)
			s.release(buf)
			buf, end = grown, cap(grown)
		}
		n, err := r.Read(buf[len(buf):end])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, false, nil
		}
		if err != nil {
			return buf, false, err
		}
		if n == 0 {
			idle++
		} else {
			idle = 0
		}
	}
	return buf, false, io.ErrNoProgress
}

// decompress undoes one content coding within the limits. ok is false when
// b is not in that coding; out is nil when it is but nothing of it may be
// decoded (a limit, noted). Otherwise out is a buffer of the state's: the
// caller decodes it with owned.
func (s *state) decompress(coding string, b []byte, path string) (out []byte, ok bool) {
	room := s.lim.MaxDecoded - s.decoded
	if len(b) < (math.MaxInt-64<<10)/s.lim.MaxRatio {
		room = min(room, s.lim.MaxRatio*len(b)+64<<10)
	}
	var r io.Reader
	var err error
	hint := 0
	switch coding {
	case "gzip", "x-gzip":
		zr, _ := gzipPool.Get().(*gzip.Reader)
		if zr == nil {
			zr, err = gzip.NewReader(bytes.NewReader(b))
		} else {
			err = zr.Reset(bytes.NewReader(b))
		}
		if err == nil {
			defer gzipPool.Put(zr)
		}
		r = zr
		// The trailer has the size of the last member, modulo 2³²: a hint,
		// not a promise (and no member inflates more than 1,032 times).
		if len(b) >= 18 {
			if n := int(binary.LittleEndian.Uint32(b[len(b)-4:])); n/1032 <= len(b) {
				hint = n
			}
		}
	case "deflate":
		if isZlib(b) {
			r, err = zlib.NewReader(bytes.NewReader(b))
		} else {
			r = flate.NewReader(bytes.NewReader(b))
		}
	case "zlib":
		r, err = zlib.NewReader(bytes.NewReader(b))
	case "br":
		if brotliWindow(b) > s.lim.MaxDecoded {
			s.limit("window", join(path, coding))
			return nil, true
		}
		r = brotli.NewReader(bytes.NewReader(b))
	case "zstd":
		// In a stream, zstd's memory limit is the largest window; a single
		// segment's window is all of its content. A first frame that asks for
		// more is refused here, before anything is allocated.
		window := uint64(max(min(zstdMaxWindow, s.lim.MaxDecoded), zstd.MinWindowSize))
		var h zstd.Header
		if h.Decode(b) == nil {
			if h.SingleSegment && h.FrameContentSize > window || h.WindowSize > window {
				s.limit("window", join(path, coding))
				return nil, true
			}
			if h.HasFCS {
				hint = int(min(h.FrameContentSize, uint64(room)))
			}
		}
		d, derr := zstd.NewReader(bytes.NewReader(b), zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxMemory(window))
		if derr != nil {
			return nil, false
		}
		defer d.Close()
		r = d
	default:
		return nil, false
	}
	if err != nil {
		return nil, false
	}
	out, over, err := s.readAll(r, room, hint)
	switch {
	case over:
		s.limit("expansion", join(path, coding))
	case coding == "zstd" && (errors.Is(err, zstd.ErrWindowSizeExceeded) || errors.Is(err, zstd.ErrDecoderSizeExceeded)): // a later frame
		s.limit("window", join(path, coding))
	case err != nil && len(out) == 0:
		s.release(out)
		return nil, false
	}
	if len(out) == 0 && (over || err != nil) {
		s.release(out)
		return nil, true
	}
	if !s.budget(len(out), join(path, coding)) {
		s.release(out)
		return nil, false
	}
	return out, true
}

// owned decodes b, a buffer the state made (decompressed, or decoded from
// base64 or hex) that nothing else refers to. Text is decoded where it lies:
// the buffer becomes the string, and is never reused. Anything else is
// decoded as bytes, which copy what they keep, and b is released.
//
// A buffer much larger than its text is not given away (the text would pin
// it): the text is copied out, when the allowance has room for it.
func (s *state) owned(b []byte, path, key string, depth int) {
	if depth <= s.lim.MaxDepth && sniffCoding(b) == "" && printable(b) {
		if cap(b)-len(b) <= len(b)/8+64 || !s.spend(len(b)) {
			s.str(unsafe.String(unsafe.SliceData(b), len(b)), path, key, depth)
			return
		}
		s.str(string(b), path, key, depth)
		s.release(b)
		return
	}
	s.bytes(b, path, key, depth)
	s.release(b)
}

// brotliWindow is the size of the window a brotli stream declares in its
// first bits (RFC 7932, section 9.1): what its decoder's ring buffer grows to.
func brotliWindow(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	c := b[0]
	bits := 16
	switch n, m := int(c>>1&7), int(c>>4&7); {
	case c&1 == 0:
	case n != 0:
		bits = 17 + n
	case m != 0:
		bits = 8 + m // m == 1 is invalid, and the decoder refuses it
	default:
		bits = 17
	}
	return 1<<bits - 16
}

// gzipPool keeps decompressors between requests: a fresh one allocates a
// window of 32 KiB, the largest cost of decoding a small compressed body.
var gzipPool sync.Pool
