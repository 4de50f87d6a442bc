package report

import (
	"fmt"
	"sort"
	"strings"

	"phonehome/internal/flow"
)

// Stopped is what the policy stopped going to one party (an owner, or a host
// whose owner is not known): requests and connections blocked, lookups
// answered with no address, requests forwarded with values taken out.
type Stopped struct {
	Party    string
	Blocked  int            // requests and connections refused
	Lookups  int            // DNS lookups answered by phonehome
	Redacted int            // requests forwarded without some values
	Kinds    map[string]int // kinds taken out → times
	Rules    map[string]int // the rules that decided → times
	// Did it keep working: the statuses servers answered redacted requests
	// with, and blocked requests the app sent again (the same method and
	// path blocked before).
	Answers map[int]int
	Retried int
	blocked map[string]bool // method + path of blocked requests
}

// addStopped counts f's verdict, if it stopped anything.
func (s *Summary) addStopped(f *flow.Flow) {
	v := f.Verdict
	if v.Action != flow.ActionBlock && v.Action != flow.ActionRedact {
		return
	}
	party := f.Dest.Owner
	if party == "" {
		party = f.HostOrAddr()
	}
	if s.stopped == nil {
		s.stopped = map[string]*Stopped{}
		s.blockedHosts = map[string]int{}
	}
	if v.Action == flow.ActionBlock {
		host := f.HostOrAddr()
		if f.Transport == flow.TransportDNS && f.DNS != nil {
			host = strings.TrimSuffix(strings.ToLower(f.DNS.Name), ".")
		}
		if _, ok := s.blockedHosts[host]; ok || len(s.blockedHosts) < 100000 { // bounded, however long the run
			s.blockedHosts[host]++
		}
	}
	st := s.stopped[party]
	if st == nil {
		st = &Stopped{Party: party, Kinds: map[string]int{}, Rules: map[string]int{}, Answers: map[int]int{}, blocked: map[string]bool{}}
		s.stopped[party] = st
	}
	rule := v.Rule
	if v.List != "" {
		rule += " from " + v.List
	}
	st.Rules[rule]++
	switch {
	case v.Action == flow.ActionRedact:
		st.Redacted++
		if f.Response != nil {
			st.Answers[f.Response.Status]++
		}
		seen := map[flow.Kind]bool{}
		for _, r := range v.Redactions {
			if !seen[r.Kind] {
				seen[r.Kind] = true
				st.Kinds[string(r.Kind)]++
			}
		}
	case f.Transport == flow.TransportDNS:
		st.Lookups++
	default:
		st.Blocked++
		if r := f.Request; r != nil {
			key := f.HostOrAddr() + " " + r.Method + " " + flow.URLPath(r.URL)
			if st.blocked[key] {
				st.Retried++
			} else if len(st.blocked) < 10000 { // bounded, however long the run
				st.blocked[key] = true
			}
		}
	}
}

// Stopped lists what the policy stopped, per party, most stopped first.
func (s *Summary) Stopped() []*Stopped {
	out := make([]*Stopped, 0, len(s.stopped))
	for _, st := range s.stopped {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Blocked+out[i].Lookups+out[i].Redacted, out[j].Blocked+out[j].Lookups+out[j].Redacted
		if a != b {
			return a > b
		}
		return out[i].Party < out[j].Party
	})
	return out
}

// writeStopped writes the "What was stopped" section, when anything was.
func (s *Summary) writeStopped(b *strings.Builder) {
	stopped := s.Stopped()
	if len(stopped) == 0 {
		return
	}
	b.WriteString("\nWHAT WAS STOPPED\n\n")
	rows := [][]string{{"PARTY", "BLOCKED", "RETRIED", "LOOKUPS", "REDACTED", "ANSWERED", "BY"}}
	for _, st := range stopped {
		by := sortedCounts(st.Rules)
		red := fmt.Sprint(st.Redacted)
		if len(st.Kinds) > 0 {
			red += " (" + strings.Join(sortedCounts(st.Kinds), ", ") + ")"
		}
		answers := map[string]int{}
		for code, n := range st.Answers {
			answers[fmt.Sprint(code)] = n
		}
		ans := strings.Join(sortedCounts(answers), ", ")
		if ans == "" {
			ans = "-"
		}
		rows = append(rows, []string{st.Party, fmt.Sprint(st.Blocked), fmt.Sprint(st.Retried), fmt.Sprint(st.Lookups), red, ans, strings.Join(by, "; ")})
	}
	writeTable(b, rows, map[int]bool{1: true, 2: true, 3: true})
	b.WriteString("RETRIED: blocked requests the app sent again. ANSWERED: statuses servers gave redacted requests (did the app keep working).\n")
}

// sortedCounts names each key, most counted first, with its count past one.
func sortedCounts(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	for i, k := range keys {
		if m[k] > 1 {
			keys[i] = fmt.Sprintf("%s ×%d", k, m[k])
		}
	}
	return keys
}
