package pcap

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// Link types for Writer.
const (
	LinkNull     = linkNull
	LinkEthernet = linkEthernet
	LinkRaw      = linkRaw
	LinkSLL      = linkSLL
)

// Writer writes a classic pcap file (microsecond timestamps, little-endian).
type Writer struct {
	w   io.Writer
	hdr [16]byte
}

// NewWriter writes the file header for the given link type.
func NewWriter(w io.Writer, link uint32) (*Writer, error) {
	var h [24]byte
	binary.LittleEndian.PutUint32(h[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], 262144)
	binary.LittleEndian.PutUint32(h[20:], link)
	if _, err := w.Write(h[:]); err != nil {
		return nil, fmt.Errorf("write pcap header: %w", err)
	}
	return &Writer{w: w}, nil
}

// WritePacket writes one frame.
func (pw *Writer) WritePacket(ts time.Time, data []byte) error {
	binary.LittleEndian.PutUint32(pw.hdr[0:], uint32(ts.Unix()))
	binary.LittleEndian.PutUint32(pw.hdr[4:], uint32(ts.Nanosecond()/1000))
	binary.LittleEndian.PutUint32(pw.hdr[8:], uint32(len(data)))
	binary.LittleEndian.PutUint32(pw.hdr[12:], uint32(len(data)))
	if _, err := pw.w.Write(pw.hdr[:]); err != nil {
		return fmt.Errorf("write pcap packet: %w", err)
	}
	if _, err := pw.w.Write(data); err != nil {
		return fmt.Errorf("write pcap packet: %w", err)
	}
	return nil
}
