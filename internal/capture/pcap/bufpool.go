package pcap

import "math/bits"

// bufPool recycles body buffers between flows when the consumer of the flows
// has promised not to keep them (Options.ReuseBodies). Fresh large buffers are
// what dominates the cost of reading a capture: the runtime must zero them and
// the kernel must fault their pages in.
type bufPool struct {
	free [28][][]byte // by capacity class: 1<<class bytes
}

const minClass = 9 // 512 bytes

func class(n int) int {
	if n <= 1<<minClass {
		return minClass
	}
	return bits.Len(uint(n - 1))
}

// get returns an empty buffer with room for at least n bytes.
func (p *bufPool) get(n int) []byte {
	c := class(n)
	if c >= len(p.free) {
		return make([]byte, 0, n)
	}
	if l := p.free[c]; len(l) > 0 {
		b := l[len(l)-1]
		p.free[c] = l[:len(l)-1]
		return b[:0]
	}
	return make([]byte, 0, 1<<c)
}

// put hands a buffer back; only buffers with a power-of-two capacity made by get are kept.
func (p *bufPool) put(b []byte) {
	c := cap(b)
	if c < 1<<minClass || c&(c-1) != 0 {
		return
	}
	k := bits.Len(uint(c)) - 1
	if k < len(p.free) && len(p.free[k]) < 64 {
		p.free[k] = append(p.free[k], b)
	}
}
