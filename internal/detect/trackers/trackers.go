// Package trackers knows who receives a request: a domain's owner (the company),
// its category (advertising, analytics, telemetry, social, fingerprinting,
// content, cdn) and, where known, the SDK behind it. The built-in knowledge is
// phonehome's own table plus the MIT-licensed NextDNS native-tracking lists;
// users add the lists they already have at run time (hosts files, domain lists,
// Adblock/EasyPrivacy, Disconnect, DuckDuckGo, Exodus).
package trackers

import (
	"bufio"
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"path"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/publicsuffix"
)

//go:embed data/curated.tsv data/nextdns/*.txt data/nextdns/LICENSE data/easylist/easyprivacy.txt data/easylist/ATTRIBUTION
var builtin embed.FS

// Entry is what is known of a destination.
type Entry struct {
	Domain   string // the listed domain that matched (the host or a parent of it)
	Owner    string
	Category string
	SDK      string
	List     string // which list said so
}

// KB is a knowledge base of destinations. Lookups are safe for concurrent use
// once loading is done.
type KB struct {
	domains  map[string]Entry
	packages map[string]string // Android package → owner
	read     int               // domains read by add, known before or not
}

// New returns an empty knowledge base.
func New() *KB { return &KB{domains: map[string]Entry{}, packages: map[string]string{}} }

// Builtin returns the knowledge base phonehome ships with.
func Builtin() *KB {
	kb := New()
	b, _ := builtin.ReadFile("data/curated.tsv")
	kb.loadTSV(b, "phonehome")
	names, _ := fs.Glob(builtin, "data/nextdns/*.txt")
	for _, n := range names {
		b, _ := builtin.ReadFile(n)
		vendor := strings.TrimSuffix(path.Base(n), ".txt")
		owner := nextdnsOwners[vendor]
		if owner == "" {
			owner = strings.ToUpper(vendor[:1]) + vendor[1:]
		}
		_ = kb.loadDomains(b, Entry{Owner: owner, Category: "telemetry", List: "NextDNS native-tracking-domains (" + vendor + ")"}, false)
	}
	b, _ = builtin.ReadFile("data/easylist/easyprivacy.txt")
	_ = kb.loadAdblock(b, "EasyPrivacy", false)
	kb.read = 0
	return kb
}

var nextdnsOwners = map[string]string{"alexa": "Amazon", "apple": "Apple", "huawei": "Huawei", "roku": "Roku",
	"samsung": "Samsung", "sonos": "Sonos", "windows": "Microsoft", "xiaomi": "Xiaomi"}

func (kb *KB) loadTSV(b []byte, list string) {
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, "\t")
		e := Entry{Domain: f[0], List: list}
		if len(f) > 1 {
			e.Owner = f[1]
		}
		if len(f) > 2 {
			e.Category = f[2]
		}
		if len(f) > 3 {
			e.SDK = f[3]
		}
		kb.domains[e.Domain] = e
	}
}

// add records a domain unless a more specific source already described it.
func (kb *KB) add(domain string, e Entry, override bool) {
	domain = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	if domain == "" || !strings.Contains(domain, ".") {
		return
	}
	kb.read++
	if old, ok := kb.domains[domain]; ok && !override {
		// Keep the owner and SDK we know; a list may sharpen the category.
		if old.Category == "content" && e.Category != "" {
			old.Category = e.Category
			kb.domains[domain] = old
		}
		return
	}
	e.Domain = domain
	kb.domains[domain] = e
}

// Lookup finds the entry for host or its nearest listed parent domain. A list
// that names a subdomain without saying whose it is (EasyPrivacy, a hosts file)
// borrows the owner, SDK and, for a precise category, the category of the
// parent domain phonehome's own table describes.
func (kb *KB) Lookup(host string) (Entry, bool) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if _, err := netip.ParseAddr(host); err == nil {
		e, ok := kb.domains[host] // an address has no parent domains
		return e, ok
	}
	var found Entry
	ok := false
	for h := host; h != ""; {
		if e, hit := kb.domains[h]; hit {
			if !ok {
				found, ok = e, true
			} else if found.Owner == "" && e.Owner != "" {
				found.Owner, found.SDK = e.Owner, e.SDK
				if e.Category != "content" && e.Category != "" {
					found.Category = e.Category
				}
			}
			if found.Owner != "" {
				return found, true
			}
		}
		i := strings.IndexByte(h, '.')
		if i < 0 {
			break
		}
		h = h[i+1:]
	}
	return found, ok
}

// PackageOwner returns the company behind an Android package, when a loaded list knows it.
func (kb *KB) PackageOwner(pkg string) string { return kb.packages[pkg] }

// Len is the number of domains known.
func (kb *KB) Len() int { return len(kb.domains) }

// Site returns the registrable domain (eTLD+1) of host, or host itself.
func Site(host string) string {
	if s, err := publicsuffix.EffectiveTLDPlusOne(strings.ToLower(strings.TrimSuffix(host, "."))); err == nil {
		return s
	}
	return host
}

// ErrUnknownList means a tracker list's format was not recognised.
var ErrUnknownList = errors.New("unknown tracker list format")

// expected names the formats Load reads, for its refusals.
const expected = "expected a hosts file, one domain per line, Adblock/EasyPrivacy rules, Disconnect services.json, DuckDuckGo tds.json or an Exodus tracker export"

// Load reads a tracker list in any supported format, recognised by content:
// hosts file, one domain per line, Adblock Plus/EasyPrivacy rules, Disconnect
// services.json, DuckDuckGo tds.json (web or app), Exodus tracker export.
// It returns how many domains the list named.
//
// What is not a list is refused, wrapping ErrUnknownList, and nothing of it
// is added: a file that is not text (a program, an archive, a capture), one
// whose lines are mostly neither domains nor rules (prose, a README, source
// code), and JSON that names no tracker domains. Loose text has domains in
// it here and there; taking them would make a wrong file look like a list.
func (kb *KB) Load(r io.Reader, name string) (int, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return 0, fmt.Errorf("read tracker list %s: %w", name, err)
	}
	if err := checkText(b); err != nil {
		return 0, fmt.Errorf("load tracker list %s: %w; %s", name, err, expected)
	}
	b = bytes.TrimPrefix(b, []byte("\ufeff"))
	before := kb.read
	t := bytes.TrimSpace(b)
	switch {
	case bytes.HasPrefix(t, []byte("[Adblock")) || bytes.HasPrefix(t, []byte("||")) || bytes.Contains(b, []byte("\n||")):
		err = kb.loadAdblock(b, name, true)
	case len(t) > 0 && (t[0] == '{' || t[0] == '['):
		err = kb.loadJSON(t, name)
		if err == nil && kb.read == before {
			err = fmt.Errorf("%w: JSON, but it names no tracker domains phonehome can read", ErrUnknownList)
		}
	default:
		err = kb.loadDomains(b, Entry{Category: "advertising", List: name}, true)
	}
	if errors.Is(err, ErrUnknownList) {
		return 0, fmt.Errorf("load tracker list %s: %w; %s", name, err, expected)
	}
	if err != nil {
		return 0, fmt.Errorf("load tracker list %s: %w", name, err)
	}
	return kb.read - before, nil
}

// textPrefix is how much of a list checkText looks at: enough to see a
// program's or an archive's header, little enough to cost nothing.
const textPrefix = 8 << 10

// checkText refuses what is not UTF-8 text, naming what it seems to be.
func checkText(b []byte) error {
	head := b[:min(len(b), textPrefix)]
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return fmt.Errorf("%w: it is gzip-compressed: decompress it first (gunzip)", ErrUnknownList)
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		return fmt.Errorf("%w: it is a zip archive: extract the list from it first", ErrUnknownList)
	case bytes.HasPrefix(head, []byte{0xff, 0xfe}) || bytes.HasPrefix(head, []byte{0xfe, 0xff}):
		return fmt.Errorf("%w: it is UTF-16 text: save it as UTF-8", ErrUnknownList)
	}
	if i := bytes.IndexByte(head, 0); i >= 0 {
		return fmt.Errorf("%w: it is not text (a NUL byte at offset %d, as in a program, an archive or a capture)", ErrUnknownList, i)
	}
	for i := 0; i < len(head); {
		r, n := utf8.DecodeRune(head[i:])
		if r == utf8.RuneError && n <= 1 {
			if len(head) < len(b) && !utf8.FullRune(head[i:]) {
				break // a character cut by the end of the prefix
			}
			return fmt.Errorf("%w: it is not UTF-8 text (byte 0x%02x at offset %d): save it as UTF-8", ErrUnknownList, head[i], i)
		}
		i += n
	}
	return nil
}

var hostRE = regexp.MustCompile(`^[a-z0-9_*-]+(\.[a-z0-9_-]+)+$`)

// labelRE is a host name of one label (localhost, ip6-allnodes): hosts files
// have them, and they are no tracker domains.
var labelRE = regexp.MustCompile(`^[a-z0-9_-]+$`)

// loadDomains reads a hosts file or a list of domains, one per line. When
// strict, a list with no domains, or whose lines are mostly something else,
// is refused before anything of it is added.
func (kb *KB) loadDomains(b []byte, e Entry, strict bool) error {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var domains []string
	lines, bad, firstBad, firstBadLine := 0, 0, "", 0
	for no := 1; sc.Scan(); no++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(strings.ToLower(line))
		if len(f) == 0 {
			continue
		}
		lines++
		d := f[0]
		hosts := false
		if len(f) >= 2 {
			_, err := netip.ParseAddr(d)
			hosts = err == nil || strings.Count(d, ".") == 3
		}
		if hosts {
			d = f[1] // hosts file: address then name
		}
		d = strings.TrimPrefix(d, "*.")
		switch {
		case hostRE.MatchString(d):
			if d != "localhost.localdomain" {
				domains = append(domains, d)
			}
		case hosts || labelRE.MatchString(d) && len(f) == 1:
			// localhost, broadcasthost, ip6-allnodes: a hosts file's own names
		default:
			bad++
			if firstBad == "" {
				firstBad, firstBadLine = strings.TrimSpace(sc.Text()), no
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if strict {
		switch {
		case len(domains) == 0 && bad == 0:
			return fmt.Errorf("%w: no domains found, only comments and local names", ErrUnknownList)
		case len(domains) == 0 || 2*bad > lines:
			return fmt.Errorf("%w: %d of its %d lines are not domains or hosts entries (line %d: %s)",
				ErrUnknownList, bad, lines, firstBadLine, clip(firstBad))
		}
	}
	for _, d := range domains {
		kb.add(d, e, false)
	}
	return nil
}

// clip quotes the start of a line for an error message.
func clip(s string) string {
	if len(s) > 60 {
		i := 60
		for i > 0 && !utf8.RuneStart(s[i]) {
			i--
		}
		s = s[:i] + "…"
	}
	return strconv.Quote(s)
}

// adblockRule tells a line of an Adblock list that is a rule from one that
// is not. Rules have no spaces, but for element-hiding ones (##, #@#, #?#),
// whose CSS selectors may.
func adblockRule(line string) bool {
	return !strings.ContainsAny(line, " \t") || strings.Contains(line, "#")
}

// loadAdblock takes the domain-anchored rules (||example.com^) of an Adblock
// Plus list; path rules and cosmetic filters need a URL matcher and are
// counted only. When strict, a file whose lines are mostly no rules is
// refused before anything of it is added.
func (kb *KB) loadAdblock(b []byte, name string, strict bool) error {
	cat := "advertising"
	if strings.Contains(strings.ToLower(name), "privacy") {
		cat = "analytics"
	}
	lines := strings.Split(string(b), "\n")
	if strict {
		rules, bad, firstBad, firstBadLine := 0, 0, "", 0
		for i, line := range lines {
			line = strings.TrimSpace(line)
			switch {
			case line == "" || line[0] == '!' || strings.HasPrefix(line, "[Adblock"):
			case adblockRule(line):
				rules++
			default:
				bad++
				if firstBad == "" {
					firstBad, firstBadLine = line, i+1
				}
			}
		}
		if bad > rules {
			return fmt.Errorf("%w: %d of its %d lines are not Adblock rules (line %d: %s)",
				ErrUnknownList, bad, rules+bad, firstBadLine, clip(firstBad))
		}
	}
	for _, line := range lines {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "||") || strings.HasPrefix(line, "@@") {
			continue
		}
		rule := line[2:]
		end := strings.IndexAny(rule, "^/$*")
		if end <= 0 || rule[end] != '^' {
			continue
		}
		switch rule[end+1:] {
		case "", "$third-party", "$3p", "$all", "$third-party,all":
		default:
			continue // scoped to some resource types or sites: not a whole-domain verdict
		}
		kb.add(rule[:end], Entry{Category: cat, List: name}, false)
	}
	return nil
}

func (kb *KB) loadJSON(b []byte, name string) error {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(b, &probe); err != nil {
		var list []json.RawMessage
		if json.Unmarshal(b, &list) == nil {
			return kb.loadExodus(b, name)
		}
		return fmt.Errorf("%w: it starts as JSON does, but is not JSON: %v", ErrUnknownList, err)
	}
	switch {
	case probe["categories"] != nil:
		return kb.loadDisconnect(probe["categories"], name)
	case probe["trackers"] != nil && probe["entities"] != nil:
		return kb.loadDDG(probe, name)
	case probe["trackers"] != nil:
		return kb.loadExodus(probe["trackers"], name)
	}
	return fmt.Errorf("%w: JSON without categories (Disconnect) or trackers (DuckDuckGo, Exodus)", ErrUnknownList)
}

var disconnectCategories = map[string]string{"Advertising": "advertising", "Analytics": "analytics", "Social": "social",
	"FingerprintingInvasive": "fingerprinting", "FingerprintingGeneral": "fingerprinting", "Content": "content",
	"Email": "analytics", "EmailAggressive": "analytics", "Anti-fraud": "fingerprinting", "Cryptomining": "advertising", "ConsentManagers": "content"}

// loadDisconnect reads Disconnect's services.json: category → [{company: {url: [domains]}}].
func (kb *KB) loadDisconnect(raw json.RawMessage, name string) error {
	var cats map[string][]map[string]map[string]json.RawMessage
	if err := json.Unmarshal(raw, &cats); err != nil {
		return fmt.Errorf("disconnect categories: %w", err)
	}
	for cat, companies := range cats {
		c := disconnectCategories[cat]
		if c == "" {
			c = strings.ToLower(cat)
		}
		for _, company := range companies {
			for owner, sites := range company {
				for _, v := range sites {
					var domains []string
					if json.Unmarshal(v, &domains) != nil {
						continue // flags such as "performance": "true"
					}
					for _, d := range domains {
						kb.add(d, Entry{Owner: owner, Category: c, List: name}, false)
					}
				}
			}
		}
	}
	return nil
}

var ddgCategories = map[string]string{"Advertising": "advertising", "Analytics": "analytics", "Audience Measurement": "analytics",
	"Third-Party Analytics Marketing": "analytics", "Action Pixels": "advertising", "Ad Motivated Tracking": "advertising",
	"Social - Comment": "social", "Social - Share": "social", "Social Network": "social", "Session Replay": "fingerprinting",
	"Malware": "advertising", "Unknown High Risk Behavior": "fingerprinting", "Obscure Ownership": "advertising", "CDN": "cdn",
	"Embedded Content": "content", "Online Payment": "content", "SSO": "content", "Federated Login": "content"}

// loadDDG reads DuckDuckGo's tracker data set (web tds.json or app android-tds.json).
func (kb *KB) loadDDG(probe map[string]json.RawMessage, name string) error {
	var trackers map[string]struct {
		Owner struct {
			Name        string `json:"name"`
			DisplayName string `json:"displayName"`
		} `json:"owner"`
		Categories []string `json:"categories"`
	}
	if err := json.Unmarshal(probe["trackers"], &trackers); err != nil {
		return fmt.Errorf("duckduckgo trackers: %w", err)
	}
	for d, t := range trackers {
		owner := t.Owner.DisplayName
		if owner == "" {
			owner = t.Owner.Name
		}
		cat := "advertising"
		for _, c := range t.Categories {
			if m := ddgCategories[c]; m != "" {
				cat = m
				break
			}
		}
		kb.add(d, Entry{Owner: owner, Category: cat, List: name}, false)
	}
	if raw := probe["packageNames"]; raw != nil {
		var pk map[string]string
		if err := json.Unmarshal(raw, &pk); err == nil {
			for p, o := range pk {
				kb.packages[p] = o
			}
		}
	}
	return nil
}

// loadExodus reads an Exodus Privacy tracker export: entries with a name,
// categories and network_signature, a regular expression of host names.
func (kb *KB) loadExodus(raw json.RawMessage, name string) error {
	type tracker struct {
		Name             string   `json:"name"`
		Categories       []string `json:"categories"`
		NetworkSignature string   `json:"network_signature"`
	}
	var list []tracker
	if err := json.Unmarshal(raw, &list); err != nil {
		var m map[string]tracker
		if err2 := json.Unmarshal(raw, &m); err2 != nil {
			return fmt.Errorf("exodus trackers: %w", err)
		}
		for _, t := range m {
			list = append(list, t)
		}
	}
	for _, t := range list {
		cat := "analytics"
		for _, c := range t.Categories {
			switch strings.ToLower(c) {
			case "advertisement", "advertising", "ads":
				cat = "advertising"
			case "identification", "profiling":
				cat = "fingerprinting"
			case "location":
				cat = "fingerprinting"
			case "crash reporting":
				cat = "telemetry"
			}
		}
		for _, alt := range strings.Split(t.NetworkSignature, "|") {
			d := strings.NewReplacer(`\.`, ".", "^", "", "$", "", ".*", "", "(", "", ")", "", `\`, "").Replace(alt)
			d = strings.Trim(d, ".")
			if hostRE.MatchString(d) {
				kb.add(d, Entry{Owner: t.Name, SDK: t.Name, Category: cat, List: name}, false)
			}
		}
	}
	return nil
}
