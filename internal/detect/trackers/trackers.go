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
	"strings"

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
		kb.loadDomains(b, Entry{Owner: owner, Category: "telemetry", List: "NextDNS native-tracking-domains (" + vendor + ")"}, false)
	}
	b, _ = builtin.ReadFile("data/easylist/easyprivacy.txt")
	kb.loadAdblock(b, "EasyPrivacy")
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

// Load reads a tracker list in any supported format, recognised by content:
// hosts file, one domain per line, Adblock Plus/EasyPrivacy rules, Disconnect
// services.json, DuckDuckGo tds.json (web or app), Exodus tracker export.
// It returns how many domains the list named.
func (kb *KB) Load(r io.Reader, name string) (int, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return 0, fmt.Errorf("read tracker list %s: %w", name, err)
	}
	before := kb.read
	t := bytes.TrimSpace(b)
	switch {
	case bytes.HasPrefix(t, []byte("[Adblock")) || bytes.HasPrefix(t, []byte("||")) || bytes.Contains(b, []byte("\n||")):
		kb.loadAdblock(b, name)
	case len(t) > 0 && (t[0] == '{' || t[0] == '['):
		err = kb.loadJSON(t, name)
	default:
		err = kb.loadDomains(b, Entry{Category: "advertising", List: name}, true)
	}
	if err != nil {
		return 0, fmt.Errorf("load tracker list %s: %w", name, err)
	}
	return kb.read - before, nil
}

var hostRE = regexp.MustCompile(`^[a-z0-9_*-]+(\.[a-z0-9_-]+)+$`)

// loadDomains reads a hosts file or a list of domains, one per line.
func (kb *KB) loadDomains(b []byte, e Entry, strict bool) error {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n, bad := 0, 0
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(strings.ToLower(line))
		if len(f) == 0 {
			continue
		}
		d := f[0]
		if len(f) >= 2 && (d == "0.0.0.0" || d == "127.0.0.1" || d == "::" || d == "::1" || strings.Count(d, ".") == 3) {
			d = f[1] // hosts file: address then name
		}
		d = strings.TrimPrefix(d, "*.")
		if !hostRE.MatchString(d) {
			bad++
			continue
		}
		if d == "localhost" || d == "localhost.localdomain" {
			continue
		}
		kb.add(d, e, false)
		n++
	}
	if strict && n == 0 {
		return fmt.Errorf("%w: no domains found (%d lines did not look like domains)", ErrUnknownList, bad)
	}
	return sc.Err()
}

// loadAdblock takes the domain-anchored rules (||example.com^) of an Adblock
// Plus list; path rules and cosmetic filters need a URL matcher and are counted only.
func (kb *KB) loadAdblock(b []byte, name string) {
	cat := "advertising"
	if strings.Contains(strings.ToLower(name), "privacy") {
		cat = "analytics"
	}
	for _, line := range strings.Split(string(b), "\n") {
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
}

func (kb *KB) loadJSON(b []byte, name string) error {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(b, &probe); err != nil {
		var list []json.RawMessage
		if json.Unmarshal(b, &list) == nil {
			return kb.loadExodus(b, name)
		}
		return fmt.Errorf("not JSON: %w", err)
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
