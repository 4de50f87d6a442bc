package report

import (
	"sort"
	"strings"

	"phonehome/internal/decode"
	"phonehome/internal/detect/pii"
	"phonehome/internal/flow"
)

// Persistent identifiers found by themselves: values shaped like IDs (length,
// alphabet, entropy, or a name such as device_id) that come back unchanged in
// more than one event. Which parties receive them, and which travel together
// in the same requests, is what lets a party link them.

const maxIDValues = 1 << 21 // distinct candidate values remembered (nonces included)

// ID is one persistent identifier.
type ID struct {
	Value    string
	Name     string    // the data kind found, or the field's key
	Kind     flow.Kind // the data kind, when detection named it
	Events   int       // events that carried it
	Requests int
	Owners   []string // parties (owner, or host where unknown) that received it
	Hosts    []string
	lastReq  int
}

// Link is a set of identifiers one party receives together.
type Link struct {
	Owner    string
	IDs      []*ID
	Requests int // requests that carried at least two of them
}

type idTable struct {
	index    map[string]int32
	ids      []*ID
	full     bool
	reqs     []int32 // candidate IDs of each request, -1 ends a request
	reqOwner []string
	nreq     int
}

func newIDTable() *idTable { return &idTable{index: map[string]int32{}} }

// add records the candidate identifiers of one request sent to owner/host.
func (t *idTable) add(owner, host string, values []decode.Value, kindOf func(i int) flow.Kind) {
	t.nreq++
	start := len(t.reqs)
	for i := range values {
		v := &values[i]
		kind := kindOf(i)
		name, ok := idCandidate(v, kind)
		if !ok {
			continue
		}
		n, seen := t.index[v.Text]
		if !seen {
			if len(t.ids) >= maxIDValues {
				t.full = true
				continue
			}
			n = int32(len(t.ids))
			t.index[v.Text] = n
			t.ids = append(t.ids, &ID{Value: v.Text, Name: name, Kind: kind, lastReq: -1})
		}
		id := t.ids[n]
		if id.Kind == "" && kind != "" {
			id.Kind, id.Name = kind, name
		}
		if id.lastReq == t.nreq {
			if _, _, _, batched := element(v.Path); batched {
				id.Events++ // the same value again inside one request: another event of a batch
			}
			continue
		}
		id.lastReq = t.nreq
		id.Requests++
		id.Events++
		if !contains(id.Owners, owner) {
			id.Owners = append(id.Owners, owner)
		}
		if !contains(id.Hosts, host) && len(id.Hosts) < 32 {
			id.Hosts = append(id.Hosts, host)
		}
		t.reqs = append(t.reqs, n)
	}
	if len(t.reqs)-start < 2 { // linkage needs two in one request
		t.reqs = t.reqs[:start]
		return
	}
	t.reqs = append(t.reqs, -1)
	t.reqOwner = append(t.reqOwner, owner)
}

func contains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// kindsOf looks up the kind found in each decoded value.
func kindsOf(values []decode.Value, kinds map[string]flow.Kind) func(i int) flow.Kind {
	return func(i int) flow.Kind {
		if len(kinds) == 0 {
			return ""
		}
		p := values[i].Path
		if kind := kinds["\x00"+foldIndexes(p)]; kind != "" {
			return kind
		}
		if c, _, rest, ok := element(p); ok {
			return kinds[c+"\x00"+foldIndexes(rest)]
		}
		return ""
	}
}

// addFindings records the identifiers detection found in a request that was
// not decoded again (a sampled-out request of a busy endpoint).
func (t *idTable) addFindings(owner, host string, fs []flow.Finding, buf []decode.Value) []decode.Value {
	buf = buf[:0]
	for _, x := range fs {
		if idKinds[x.Kind] {
			buf = append(buf, decode.Value{Path: x.Path, Text: x.Value, Key: lastKey(x.Path)})
		}
	}
	t.add(owner, host, buf, func(i int) flow.Kind {
		for _, x := range fs {
			if x.Path == buf[i].Path && x.Value == buf[i].Text && idKinds[x.Kind] {
				return x.Kind
			}
		}
		return ""
	})
	return buf
}

// persistent reports whether an ID came back: in two events or more.
func (id *ID) persistent() bool { return id.Events >= 2 }

// Persistent returns the identifiers seen more than once, those received by
// the most parties first.
func (t *idTable) Persistent() []*ID {
	var out []*ID
	for _, id := range t.ids {
		if id.persistent() {
			out = append(out, id)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if len(a.Owners) != len(b.Owners) {
			return len(a.Owners) > len(b.Owners)
		}
		if (a.Kind != "") != (b.Kind != "") {
			return a.Kind != ""
		}
		if a.Events != b.Events {
			return a.Events > b.Events
		}
		return a.Value < b.Value
	})
	return out
}

// Links groups, per party, the persistent identifiers that travel in the same
// requests (joined transitively: A with B and B with C links all three).
func (t *idTable) Links() []Link {
	type node struct {
		owner string
		id    int32
	}
	index := map[node]int32{}
	var nodes []node
	var parent []int32
	find := func(x int32) int32 {
		for parent[x] != x {
			parent[x] = parent[parent[x]]
			x = parent[x]
		}
		return x
	}
	// each request's persistent IDs, in turn
	each := func(fn func(owner string, ids []int32)) {
		r, from := 0, 0
		var cur []int32
		for i, x := range t.reqs {
			if x >= 0 {
				continue
			}
			cur = cur[:0]
			for _, id := range t.reqs[from:i] {
				if t.ids[id].persistent() {
					cur = append(cur, id)
				}
			}
			fn(t.reqOwner[r], cur)
			r, from = r+1, i+1
		}
	}
	each(func(owner string, ids []int32) {
		var first int32 = -1
		for _, id := range ids {
			k := node{owner, id}
			n, ok := index[k]
			if !ok {
				n = int32(len(nodes))
				index[k] = n
				nodes = append(nodes, k)
				parent = append(parent, n)
			}
			if first < 0 {
				first = n
			} else if a, b := find(first), find(n); a != b {
				parent[b] = a
			}
		}
	})
	groups := map[int32]*Link{}
	for n, nd := range nodes {
		root := find(int32(n))
		if groups[root] == nil {
			groups[root] = &Link{Owner: nd.owner}
		}
		groups[root].IDs = append(groups[root].IDs, t.ids[nd.id])
	}
	// count the requests in which two of a group travelled together
	each(func(owner string, ids []int32) {
		seen := map[int32]int{}
		for _, id := range ids {
			seen[find(index[node{owner, id}])]++
		}
		for root, c := range seen {
			if c >= 2 {
				groups[root].Requests++
			}
		}
	})
	var out []Link
	for _, g := range groups {
		if len(g.IDs) < 2 {
			continue
		}
		sortByKind(g.IDs, func(id *ID) (flow.Kind, string) { return id.Kind, id.Name })
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Requests != out[j].Requests {
			return out[i].Requests > out[j].Requests
		}
		if out[i].Owner != out[j].Owner {
			return out[i].Owner < out[j].Owner
		}
		return out[i].IDs[0].Value < out[j].IDs[0].Value
	})
	return out
}

// idKinds are the kinds that identify a device or a person over time.
var idKinds = map[flow.Kind]bool{pii.IMEI: true, pii.IMSI: true, pii.ICCID: true, pii.SerialNumber: true, pii.AndroidID: true,
	pii.AdvertisingID: true, pii.MACAddress: true, pii.InstallID: true, pii.DeviceID: true, pii.PhoneNumber: true,
	pii.Email: true, pii.AccountID: true, pii.WifiBSSID: true}

// notIDKeys name values that change by design or describe content, not a device.
var notIDKeys = map[string]bool{"sign": true, "sig": true, "signature": true, "checksum": true, "hash": true, "md5": true,
	"nonce": true, "ts": true, "time": true, "timestamp": true, "date": true, "crc": true, "etag": true, "seq": true,
	"requestid": true, "request_id": true, "reqid": true, "traceid": true, "trace_id": true, "spanid": true, "url": true,
	"ref": true, "referrer": true, "duration": true, "size": true, "length": true, "offset": true, "limit": true}

// idCandidate decides whether a value could be an identifier, and names it.
func idCandidate(v *decode.Value, kind flow.Kind) (string, bool) {
	if kind != "" {
		if idKinds[kind] {
			return string(kind), true
		}
		return "", false // a device description or behaviour, not an ID
	}
	key := strings.ToLower(v.Key)
	if notIDKeys[key] || strings.HasPrefix(v.Path, "header:") && !strings.HasPrefix(strings.ToLower(v.Path), "header:x-") {
		return "", false
	}
	s := v.Text
	if len(s) < 12 || len(s) > 128 {
		return "", false
	}
	digits, letters, other := 0, 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			letters++
		case c == '-' || c == '_' || c == ':' || c == '=' || c == '+' || c == '/' || c == '.':
			other++
		default:
			return "", false // spaces, punctuation: text, not an ID
		}
	}
	if digits == 0 || strings.Contains(s, "://") || strings.Count(s, ".") >= 2 && letters == 0 {
		return "", false // words; URLs; versions and addresses
	}
	if letters == 0 && other == 0 && (len(s) == 13 || len(s) == 10 || len(s) == 16 || len(s) == 19) {
		return "", false // a timestamp in s, ms, µs or ns
	}
	if decode.Entropy([]byte(s)) < 3.0 {
		return "", false
	}
	name := v.Key
	if name == "" {
		name = lastKey(v.Path)
	}
	return name, true
}
