package web

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"

	"phonehome/internal/live"
)

// sseBuffer is each stream's buffer of events: a few seconds of a busy
// phone. A tab that cannot take them is dropped, never waited for.
const sseBuffer = 1024

// apiEvents streams the live flows as Server-Sent Events: one "flow" event
// (a Row) per completed flow, and "notice" events. Under load the events
// that wait are written together and flushed once. A tab that stops reading
// fills its buffer and is dropped by the broker; one whose connection stops
// taking bytes fails its write deadline. Either way the stream ends with a
// "dropped" event if it still can, and the page subscribes again.
func (s *Server) apiEvents(w http.ResponseWriter, r *http.Request) {
	if s.opts.Live == nil {
		fail(w, http.StatusNotFound, "nothing is being captured: the live stream is served by phonehome run")
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	sub := s.opts.Live.Subscribe("web "+r.RemoteAddr, sseBuffer, func(ev live.Event) bool {
		return ev.Kind == live.EventFlow || ev.Kind == live.EventNotice
	})
	defer sub.Close()
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "retry: 1000\n\n")
	if rc.Flush() != nil {
		return
	}
	keepAlive := time.NewTicker(15 * time.Second)
	defer keepAlive.Stop()
	buf := make([]byte, 0, 64<<10)
	for {
		var ev live.Event
		var ok bool
		select {
		case ev, ok = <-sub.C():
		case <-keepAlive.C:
			buf = append(buf, ": keep-alive\n\n"...)
			ok = true
		case <-r.Context().Done():
			return
		case <-s.ctx.Done():
			return
		}
		if !ok {
			if err := sub.Err(); err != nil {
				buf = appendEvent(buf, "dropped", 0, apiError{Error: err.Error()})
				_ = rc.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = w.Write(buf)
				_ = rc.Flush()
			}
			return
		}
		buf = appendLive(buf, ev)
		// what else waits goes in the same write
		for n := 0; n < 512 && len(buf) < 256<<10; n++ {
			select {
			case ev, ok = <-sub.C():
			default:
				ok = false
			}
			if !ok {
				break
			}
			buf = appendLive(buf, ev)
		}
		_ = rc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := w.Write(buf); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		buf = buf[:0]
	}
}

func appendLive(buf []byte, ev live.Event) []byte {
	switch ev.Kind {
	case live.EventFlow:
		r := rowOf(ev.Flow)
		return appendEvent(buf, "flow", r.ID, r)
	case live.EventNotice:
		return appendEvent(buf, "notice", 0, map[string]any{"time": ev.Time, "text": ev.Text})
	}
	return buf
}

// appendEvent writes one SSE event; JSON has no raw newlines, so one data line.
func appendEvent(buf []byte, name string, id int64, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return buf
	}
	buf = append(buf, "event: "...)
	buf = append(buf, name...)
	if id != 0 {
		buf = append(buf, "\nid: "...)
		buf = strconv.AppendInt(buf, id, 10)
	}
	buf = append(buf, "\ndata: "...)
	buf = append(buf, b...)
	return append(buf, "\n\n"...)
}
