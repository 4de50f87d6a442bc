package pii

import (
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/nyaruka/phonenumbers"

	"phonehome/internal/decode"
	"phonehome/internal/flow"
)

// Field names whose values are never personal data, however they look:
// signatures, nonces, timestamps and content hashes.
var skipKeys = map[string]bool{"nonce": true, "sign": true, "signature": true, "sig": true, "ts": true, "timestamp": true,
	"time": true, "requestid": true, "reqid": true, "traceid": true, "spanid": true, "hash": true, "checksum": true,
	"md5": true, "sha1": true, "sha256": true, "etag": true, "crc": true, "seq": true, "eventid": true, "msgid": true,
	"messageid": true, "v": true, "ver": true, "version": true, "alg": true, "typ": true, "kid": true}

func (d *Detector) phone(v string, keyed bool) (string, bool) { return d.phoneIn(v, keyed, d.Region) }

// phoneIn is phone with the region for numbers written without a country code.
func (d *Detector) phoneIn(v string, keyed bool, region string) (string, bool) {
	v = strings.TrimSpace(v)
	if len(v) < 7 || len(v) > 20 {
		return "", false
	}
	digits := 0
	for _, c := range v {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case strings.ContainsRune("+-() .", c):
		default:
			return "", false
		}
	}
	if digits < 7 || timestamp(v) {
		return "", false
	}
	if !strings.HasPrefix(v, "+") {
		if !keyed || region == "" {
			if !keyed || !strings.HasPrefix(v, "00") {
				return "", false
			}
		}
	}
	num, err := phonenumbers.Parse(v, region)
	if err != nil || !phonenumbers.IsValidNumber(num) {
		return "", false
	}
	return phonenumbers.Format(num, phonenumbers.E164), true
}

var reUAModel = regexp.MustCompile(`Android (\d[\d.]*);(?: [a-z]{2}[-_][A-Za-z]{2};)? ([^;)]+?)(?: Build/[^;)]*)?(?: MIUI/([^;) ]+))?\)`)

// kindAt is a kind of data at a decode path.
type kindAt struct {
	kind flow.Kind
	path string
}

// Scan finds personal data in the decoded values of one request.
func (d *Detector) Scan(vals []decode.Value) []Hit { return d.ScanAppend(nil, vals) }

// ScanAppend is Scan appending to hits[:0], so a caller can reuse the slice.
func (d *Detector) ScanAppend(hits []Hit, vals []decode.Value) []Hit {
	hits = hits[:0]
	hit := func(kind flow.Kind, value, path string, method flow.Method, conf float64) {
		hits = append(hits, Hit{Kind: kind, Value: value, Path: path, Method: method, Confidence: conf})
	}
	because := func(kind flow.Kind, value, path string, method flow.Method, conf float64, why string) {
		hits = append(hits, Hit{Kind: kind, Value: value, Path: path, Method: method, Confidence: conf, Why: why})
	}
	var apps []decode.Value // values under an app-list key, joined into one finding
	var lat, lng, sw, sh *decode.Value
	var pkgs map[string][]decode.Value // package names by the field (or array) that holds them
	var knownAt map[kindAt]bool        // where a known value was found
	var region string                  // the country the request says the phone is in
	regionDone := false
	var prevSeg string         // the URL path segment before this one
	var serials []decode.Value // short serial-number fields, kept if hardware IDs sit beside them
	yt, ytDone := false, false // whether the request speaks of YouTube
	for i := range vals {
		v := vals[i]
		if d.Known != nil {
			for _, h := range d.Known.Match(v.Text) {
				path := v.Path
				if h.Path != "" {
					path += " › as " + h.Path
				}
				hits = append(hits, Hit{Kind: h.Kind, Value: h.Value, Path: path, Method: flow.MethodKnown,
					Confidence: h.Confidence, Why: h.Why, whole: h.whole})
				if knownAt == nil {
					knownAt = map[kindAt]bool{}
				}
				knownAt[kindAt{h.Kind, v.Path}] = true
				if h.Kind == Contact { // someone else's number, not the user's own
					knownAt[kindAt{PhoneNumber, v.Path}] = true
				}
			}
		}
		ki := d.effectiveKey(v)
		if ki == nil && v.Key != "" {
			// "userLat", "geo_longitude", "mLng": a coordinate's half under a
			// name of its own, paired below like the names the detector knows.
			switch coordKey(v.Key) {
			case 'a':
				if lat == nil {
					lat = &vals[i]
				}
			case 'o':
				if lng == nil {
					lng = &vals[i]
				}
			}
		}
		if ki != nil {
			switch ki.pair {
			case 'a':
				lat = &vals[i]
			case 'o':
				lng = &vals[i]
			case 'w':
				sw = &vals[i]
			case 'h':
				sh = &vals[i]
			}
			if ki.skip {
				continue
			}
		}
		text := strings.TrimSpace(v.Text)
		if text == "" {
			continue
		}
		if kind, ok := positional(v); ok {
			if kind == ScreenSize {
				if strings.HasSuffix(v.Path, "[9]") {
					sw = &vals[i]
				} else {
					sh = &vals[i]
				}
			} else if kind != "" && (text != "" && !v.Numeric || kind == OSVersion) {
				hit(kind, text, v.Path, flow.MethodKey, 0.85)
			}
			continue
		}
		if strings.HasPrefix(v.Path, "path[") {
			if kind, ok := pathID(prevSeg, text); ok {
				because(kind, text, v.Path, flow.MethodInference, 0.75, "an ID after the REST collection /"+prevSeg+"/ in the URL's path")
			}
			prevSeg = text
			continue
		}
		switch {
		case lanName(v):
			because(DeviceModel, text, v.Path, flow.MethodKey, 0.8, "the name the device announces to the local network")
			if owner, ok := ownerOf(text); ok {
				because(PersonName, owner, v.Path, flow.MethodInference, 0.7, "the owner's name in the device's name ("+text+")")
			}
			continue
		case wifiFlag(v, text):
			because(NetworkType, "wifi", v.Path, flow.MethodKey, 0.8, "a flag that says the device is on Wi-Fi")
			continue
		case profileName(v, text):
			because(PersonName, text, v.Path, flow.MethodKey, 0.8, "the name in a person's profile object ("+v.Parent+"), a first and a last name")
			continue
		case serialKey(v, text):
			serials = append(serials, v)
			continue
		case d.tokenHeader(v, text, func(h Hit) { hits = append(hits, h) }):
			continue
		}
		if u, ok := youTubeID(v, text, func() bool {
			if !ytDone {
				yt, ytDone = mentionsYouTube(vals), true
			}
			return yt
		}); ok {
			because(VisitedURL, u, v.Path, flow.MethodInference, 0.75, "a YouTube video's ID (11 characters of base64url) in a request that speaks of YouTube: the video watched")
			continue
		}
		if ssids := scanList(text); ssids != nil {
			for _, s := range ssids {
				because(WifiSSID, s, v.Path, flow.MethodPattern, 0.8, "a network's name beside its BSSID in a Wi-Fi scan list")
			}
		}
		if packageList(text) { // several apps in one field, whatever it is called
			hit(AppList, text, v.Path, flow.MethodPattern, 0.85)
			continue
		}
		if isPackageName(text) {
			group := pathShape(v.Path)
			if pkgs == nil {
				pkgs = map[string][]decode.Value{}
			}
			pkgs[group] = append(pkgs[group], v)
		}
		if ki != nil && ki.hasRule {
			r := ki.rule
			switch r.kind {
			case PhoneNumber, Contact:
				if n, ok := d.phone(text, true); ok {
					hit(r.kind, n, v.Path, flow.MethodKey, r.conf)
					continue
				}
				if d.Region == "" {
					// A national number: the request itself says which country
					// the phone is in (its locale, its country field).
					if !regionDone {
						region, regionDone = requestRegion(vals), true
					}
					if n, ok := d.phoneIn(text, true, region); ok && region != "" {
						hit(r.kind, n, v.Path, flow.MethodKey, r.conf-0.1)
						continue
					}
				}
				if hashOf(text) { // Facebook's ud[ph], TikTok's sha256_phone_number: a digest of the number
					hit(r.kind, text, v.Path, flow.MethodKey, r.conf-0.1)
					continue
				}
			case Email:
				if m := reEmail.FindString(text); m != "" {
					hit(Email, m, v.Path, flow.MethodKey, r.conf)
					continue
				}
				if hashOf(text) { // hashed for "privacy", still one person's address
					hit(Email, text, v.Path, flow.MethodKey, r.conf-0.1)
					continue
				}
			case AppList:
				if validPackage(text, v.Numeric) {
					apps = append(apps, v)
					continue
				}
				if strings.Count(text, ",") >= 1 {
					n := 0
					for _, p := range strings.Split(text, ",") {
						if validPackage(strings.TrimSpace(p), false) {
							n++
						}
					}
					if n >= 2 {
						hit(AppList, text, v.Path, flow.MethodKey, r.conf)
						continue
					}
				}
			default:
				if r.valid(text, v.Numeric) {
					kind, conf := refine(r.kind, text), r.conf
					if hashOf(text) && r.kind != Password {
						conf -= 0.1 // a hash of an identifier is still that identifier, but less surely
					}
					hit(kind, text, v.Path, flow.MethodKey, conf)
					continue
				}
			}
		}
		d.patterns(v, text, hit)
	}
	if serials != nil {
		hits = serialBeside(serials, hits)
	}
	if lat != nil && lng != nil && lat.Parent == lng.Parent {
		d.coordinates(lat, lng, &hits)
	}
	if sw != nil && sh != nil && allDigits(sw.Text) && allDigits(sh.Text) {
		hit(ScreenSize, sw.Text+"x"+sh.Text, sw.Path, flow.MethodKey, 0.85)
	}
	listed := map[string]bool{}
	for _, a := range apps {
		listed[pathShape(a.Path)] = true
	}
	var inList map[string]bool // paths of package names reported as part of a list
	for group, vs := range pkgs {
		if listed[group] || !distinctTexts(vs) {
			continue
		}
		// Two or more apps in the elements of one array or batch, whatever the
		// field is called: the apps on the phone or in use, not the sender.
		names := make([]string, len(vs))
		if inList == nil {
			inList = map[string]bool{}
		}
		for i, x := range vs {
			names[i] = x.Text
			inList[x.Path] = true
		}
		hit(AppList, strings.Join(names, ","), group, flow.MethodInference, 0.8)
	}
	if inList != nil {
		kept := hits[:0]
		for _, h := range hits {
			if (h.Kind == SenderApp || h.Kind == HostApp) && inList[h.Path] {
				continue
			}
			kept = append(kept, h)
		}
		hits = kept
	}
	hits = appNames(hits)
	if len(knownAt) > 0 {
		hits = preferKnown(hits, knownAt)
	}
	if len(apps) >= 2 {
		var names []string
		for _, a := range apps {
			names = append(names, a.Text)
		}
		path := apps[0].Path
		if i := strings.LastIndex(path, "["); i > 0 {
			path = path[:i]
		}
		hit(AppList, strings.Join(names, ","), path, flow.MethodKey, 0.9)
	} else if len(apps) == 1 {
		hit(AppList, apps[0].Text, apps[0].Path, flow.MethodKey, 0.6)
	}
	return hits
}

// preferKnown settles what the profile and the other evidence say of the same
// value. Found by name or shape too, the known finding is kept alone. A value
// that is wholly one of the person's identifiers is that, whatever else its
// field's name or shape suggests. But a device attribute's value is often
// shared ("12.5.3.0" is an app's version and the ROM's), so there the field's
// name decides: a known app version under "miui" is the OS version.
func preferKnown(hits []Hit, knownAt map[kindAt]bool) []Hit {
	var wholeID, keyed map[string]flow.Kind
	for _, h := range hits {
		switch {
		case h.Method == flow.MethodKnown && h.whole && !Fingerprint(h.Kind):
			if wholeID == nil {
				wholeID = map[string]flow.Kind{}
			}
			wholeID[baseOfKnown(h.Path)] = h.Kind
		case h.Method == flow.MethodKey && Fingerprint(h.Kind):
			if keyed == nil {
				keyed = map[string]flow.Kind{}
			}
			keyed[h.Path] = h.Kind
		}
	}
	kept := hits[:0]
	for _, h := range hits {
		if h.Method == flow.MethodKnown {
			if k, ok := keyed[baseOfKnown(h.Path)]; ok && Fingerprint(h.Kind) && k != h.Kind {
				continue
			}
		} else {
			if knownAt[kindAt{h.Kind, h.Path}] {
				continue
			}
			if k, ok := wholeID[h.Path]; ok && k != h.Kind && !(k == Contact && h.Kind == PersonName) {
				continue
			}
		}
		kept = append(kept, h)
	}
	return kept
}

// baseOfKnown is the decode path of a known hit without the form it was found in.
func baseOfKnown(p string) string {
	if i := strings.Index(p, " › as "); i >= 0 {
		return p[:i]
	}
	return p
}

// patterns recognises values by their shape alone, where the name said nothing.
func (d *Detector) patterns(v decode.Value, text string, hit func(kind flow.Kind, value, path string, method flow.Method, conf float64)) {
	if strings.HasPrefix(v.Path, "header:User-Agent") || strings.EqualFold(v.Key, "user-agent") {
		if m := reUAModel.FindStringSubmatch(text); m != nil {
			hit(OSVersion, "Android "+m[1], v.Path, flow.MethodPattern, 0.9)
			hit(DeviceModel, strings.TrimSpace(m[2]), v.Path, flow.MethodPattern, 0.9)
		}
		if p := strings.Fields(text); len(p) > 0 {
			if name, _, _ := strings.Cut(p[0], "/"); validPackage(name, false) && strings.Count(name, ".") >= 2 {
				hit(SenderApp, name, v.Path, flow.MethodPattern, 0.8)
			}
		}
		return
	}
	// Cheap tests of length and characters guard every regular expression:
	// this runs on every value of every request.
	if strings.IndexByte(text, '@') > 0 {
		if m := reEmail.FindString(text); m != "" && !fileName(m) {
			hit(Email, m, v.Path, flow.MethodPattern, 0.9)
			return
		}
	}
	if v.Numeric {
		return // a bare number is too often a counter, a price or a time
	}
	switch n := len(text); {
	case n == 15 && validIMEI(text, false) && imeiPrefixes[text[:2]]:
		hit(IMEI, text, v.Path, flow.MethodPattern, 0.85)
	case n >= 19 && n <= 22 && validICCID(text, false) && allDigits(text) && luhn(text):
		hit(ICCID, text, v.Path, flow.MethodPattern, 0.85)
	case n == 17 && reMACSep.MatchString(text) && validMAC(text, false):
		hit(MACAddress, text, v.Path, flow.MethodPattern, 0.8)
	case text[0] == '+':
		if n, ok := d.phone(text, false); ok {
			hit(PhoneNumber, n, v.Path, flow.MethodPattern, 0.85)
		}
	case n >= 11 && n <= 44 && strings.IndexAny(text, ",; ") > 0 && validLatLng(text, false):
		hit(Location, text, v.Path, flow.MethodPattern, 0.8)
	default:
		if v.Key != "" { // a named field: a path segment or a bare list element says less
			d.valueEvidence(v, text, hit)
		}
	}
}

// valueEvidence recognises identifiers and device attributes by their shape,
// under a field whose name said nothing: the shape must be specific (real
// language and country codes, a real MCC, a zone name) for the value to speak
// alone, and a name that says "per request" takes an identifier's shape back.
func (d *Detector) valueEvidence(v decode.Value, text string, hit func(kind flow.Kind, value, path string, method flow.Method, conf float64)) {
	n := len(text)
	switch {
	case n == 16 && hex16(text):
		var buf [96]byte
		if !ephemeralKey(string(appendNorm(appendNorm(buf[:0], v.Parent), v.Key))) && !ephemeralName(v.Key) {
			hit(AndroidID, text, v.Path, flow.MethodPattern, 0.6)
		}
	case n == 36 && text[8] == '-' && reUUID.MatchString(text) && strings.Trim(text, "0-") != "":
		// A random UUID under a name that says nothing: an advertising or an
		// install ID (both are device IDs to the reader), unless the name
		// says per request; recurrence confirms it (Recurrent).
		var buf [96]byte
		if !ephemeralKey(string(appendNorm(appendNorm(buf[:0], v.Parent), v.Key))) && !ephemeralName(v.Key) {
			hit(DeviceID, text, v.Path, flow.MethodPattern, 0.5)
		}
	case n > 40 && fcmToken(text):
		hit(InstallID, text, v.Path, flow.MethodPattern, 0.85)
	case n >= 5 && n <= 10 && localeTag(text):
		hit(Locale, text, v.Path, flow.MethodPattern, 0.75)
	case n >= 5 && n <= 50 && strings.IndexByte(text, '/') > 0 || n >= 5 && n <= 9 && (text[0] == 'G' || text[0] == 'U' || text[0] == '+' || text[0] == '-'):
		if timezoneName(text) {
			hit(Timezone, text, v.Path, flow.MethodPattern, 0.75)
		}
	case n >= 16 && n <= 40 && text[0] >= '1' && text[0] <= '2' && datetimeOffset(text):
		hit(Timezone, text[strings.LastIndexAny(text, "+-"):], v.Path, flow.MethodPattern, 0.6)
	case n <= 8 && networkType(text) && !containsFold(v.Parent, "cell"):
		// (a cell tower's radio is the tower's, reported as part of a location)
		hit(NetworkType, text, v.Path, flow.MethodPattern, 0.6)
	case n >= 7 && n <= 11 && validScreen(text, false) && screenText(text):
		hit(ScreenSize, text, v.Path, flow.MethodPattern, 0.7)
	case (n == 5 || n == 6) && mccMNC(text) && carrierKey(v):
		hit(Carrier, text, v.Path, flow.MethodPattern, 0.6)
	}
}

// ephemeralName reports whether a field's own name is a short per-request one.
func ephemeralName(key string) bool {
	var b [16]byte
	return len(key) <= len(b) && ephemeralNames[string(appendNorm(b[:0], key))]
}

// screenText reports whether "1080x2400" (or "2400*1080") has screen-like sides.
func screenText(v string) bool {
	i := strings.IndexAny(v, "x*")
	return i > 0 && screenPair(strings.TrimSpace(v[:i]), strings.TrimSpace(v[i+1:]))
}

// carrierKey: an MCC-MNC is five or six digits, as many other numbers are, so
// it needs a field name that speaks of the network or the SIM.
func carrierKey(v decode.Value) bool {
	var buf [96]byte
	k := string(appendNorm(buf[:0], v.Key))
	if k == "op" || k == "plmn" || k == "hni" {
		return true
	}
	for _, w := range []string{"mcc", "mnc", "operator", "carrier", "provider", "sim", "plmn", "network", "isp"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// effectiveKey finds what the detector knows of a value's field, named with the
// JSON object around it first: "os.version" is an OS version where "version"
// alone means nothing. It does not allocate; nil means an unknown field.
//
// What it found is remembered per field name: trackers send the same fields
// in every request, and working a name out takes a score of map lookups.
func (d *Detector) effectiveKey(v decode.Value) *keyInfo {
	var kb [128]byte
	if len(v.Parent)+len(v.Key)+1 > len(kb) {
		return d.resolveKey(v)
	}
	k := append(append(append(kb[:0], v.Parent...), 0), v.Key...)
	d.keys.mu.RLock()
	ki, ok := d.keys.m[string(k)]
	d.keys.mu.RUnlock()
	if ok {
		return ki
	}
	ki = d.resolveKey(v)
	d.keys.mu.Lock()
	if d.keys.m == nil || len(d.keys.m) >= maxKeys {
		d.keys.m = map[string]*keyInfo{}
	}
	d.keys.m[string(k)] = ki
	d.keys.mu.Unlock()
	return ki
}

// maxKeys bounds the field names remembered; past it the detector starts again.
const maxKeys = 1 << 13

// keyCache is what effectiveKey found, by the object's and the field's names.
type keyCache struct {
	mu sync.RWMutex
	m  map[string]*keyInfo
}

// resolveKey is effectiveKey without the memory.
func (d *Detector) resolveKey(v decode.Value) *keyInfo {
	var buf [96]byte
	if v.Parent != "" {
		if ki := d.names[string(appendNorm(appendNorm(buf[:0], v.Parent), v.Key))]; ki != nil {
			return ki
		}
	}
	b := appendNorm(buf[:0], v.Key)
	if v.Parent != "" && len(b) <= 11 && versionKeys[string(b)] {
		// "appInfo.version", "os.ver": a bare version is the version of the
		// object around it.
		var pb [64]byte
		if len(v.Parent) <= len(pb) {
			switch p := string(appendNorm(pb[:0], v.Parent)); {
			case strings.Contains(p, "app") || strings.Contains(p, "client") || strings.Contains(p, "application"):
				return &appVersionKey
			case p == "os" || strings.Contains(p, "system") || strings.Contains(p, "android") || strings.Contains(p, "platform") || strings.Contains(p, "rom"):
				return &osVersionKey
			}
		}
	}
	if ki := d.names[string(b)]; ki != nil {
		return ki
	}
	// SDKs prefix the names of the IDs they pass on ("mixpanel_distinct_id",
	// "fb_anon_id"): an identifier's name at the end of a longer name still
	// names it. Only identifiers: their values are validated strictly enough.
	for i := 1; len(b)-i >= 5; i++ {
		if ki := d.names[string(b[i:])]; ki != nil && ki.hasRule && identifierKinds[ki.rule.kind] {
			return ki
		}
	}
	// "device_carrier", "user_timezone", "sim_operator": a device attribute's
	// name after a word that only says whose it is.
	for _, q := range qualifierWords {
		if len(b) > len(q)+1 && string(b[:len(q)]) == q {
			if ki := d.names[string(b[len(q):])]; ki != nil && ki.hasRule && Fingerprint(ki.rule.kind) && ki.rule.kind != SenderApp {
				return ki
			}
		}
	}
	// "mac_sha1", "sha256_email", "idfa_md5": the name of what was hashed,
	// beside the name of the hash.
	for _, w := range hashWords {
		if len(b) < len(w)+2 {
			continue
		}
		var rest []byte
		if string(b[len(b)-len(w):]) == w {
			rest = b[:len(b)-len(w)]
		} else if string(b[:len(w)]) == w {
			rest = b[len(w):]
		} else {
			continue
		}
		if ki := d.names[string(rest)]; ki != nil && ki.hasRule && (identifierKinds[ki.rule.kind] || hashedPersonal[ki.rule.kind]) {
			return ki
		}
	}
	return nil
}

// Kinds that SDKs hash before they send them ("sha256_phone_number",
// "hashed_first_name"), as advertisers match customers on them: the hash is
// still that person's number or name.
var hashedPersonal = map[flow.Kind]bool{PhoneNumber: true, PersonName: true}

// pathShape removes every array index from a path, so that the same field of
// the elements of one array or batch shares a shape: "events[3].pkg" → "events[].pkg".
func pathShape(p string) string {
	if strings.IndexByte(p, '[') < 0 {
		return p
	}
	b := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		b = append(b, p[i])
		if p[i] == '[' {
			j := i + 1
			for j < len(p) && p[j] >= '0' && p[j] <= '9' {
				j++
			}
			if j > i+1 && j < len(p) && p[j] == ']' {
				i = j - 1
			}
		}
	}
	return strings.TrimSuffix(string(b), "[]")
}

func distinctTexts(vs []decode.Value) bool {
	for _, v := range vs[1:] {
		if v.Text != vs[0].Text {
			return true
		}
	}
	return false
}

// fileName reports whether an address-looking match is an asset's name
// ("icon@3x.png"): its "domain" ends in a file type.
func fileName(m string) bool {
	i := strings.LastIndexByte(m, '.')
	switch strings.ToLower(m[i+1:]) {
	case "png", "jpg", "jpeg", "gif", "webp", "svg", "ico", "js", "css", "html", "htm", "json", "xml", "mp4", "mp3", "woff", "woff2", "ttf", "pdf", "zip", "apk":
		return true
	}
	return false
}

var qualifierWords = []string{"device", "user", "client", "sim", "phone", "system", "current", "default", "local", "mobile"}

var (
	versionKeys   = set("version ver v versionname vn")
	appVersionKey = keyInfo{rule: rule{AppVersion, validVersion, 0.8}, hasRule: true}
	osVersionKey  = keyInfo{rule: rule{OSVersion, validVersion, 0.8}, hasRule: true}
)

var identifierKinds = map[flow.Kind]bool{IMEI: true, IMSI: true, ICCID: true, SerialNumber: true, AndroidID: true,
	AdvertisingID: true, MACAddress: true, InstallID: true, DeviceID: true, Email: true, AccountID: true}

// appendNorm appends k lowercased, letters and digits only.
func appendNorm(b []byte, k string) []byte {
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b = append(b, c)
		case c >= 'A' && c <= 'Z':
			b = append(b, c+32)
		}
	}
	return b
}

var reAppsFlyerID = regexp.MustCompile(`^\d{13}-\d{6,20}$`)

// refine sharpens what a field name said by what the value looks like.
func refine(kind flow.Kind, v string) flow.Kind {
	if kind == DeviceID && len(v) == 16 && allHex(v) {
		return AndroidID // Android's ANDROID_ID is 16 hex digits, whatever the SDK calls it
	}
	if kind == AdvertisingID && len(v) == 16 && allHex(v) {
		return DeviceID // an advertising ID of 16 hex digits is a vendor's OAID (Xiaomi), not Google's UUID
	}
	if kind == DeviceID && len(v) == 17 && reMACSep.MatchString(v) {
		return MACAddress // a device ID written as a MAC address is one (AirPlay's deviceid)
	}
	if (kind == AccountID || kind == DeviceID) && reAppsFlyerID.MatchString(v) {
		return InstallID // AppsFlyer's install ID: install time in ms, a dash, random digits
	}
	return kind
}

// Top-level domains that reverse-DNS package names start with; host names do not.
var packageTLDs = map[string]bool{"com": true, "org": true, "net": true, "io": true, "de": true, "in": true, "app": true,
	"air": true, "me": true, "co": true, "tv": true, "uk": true, "fr": true, "jp": true, "cn": true, "ru": true, "br": true,
	"kr": true, "us": true, "ch": true, "nl": true, "it": true, "es": true, "au": true, "ca": true, "se": true, "info": true, "mobi": true}

func isPackageName(v string) bool {
	first, _, ok := strings.Cut(v, ".")
	return ok && packageTLDs[first] && len(v) <= 200 && rePackage.MatchString(v)
}

// Positional formats: SDKs that send device details as an array, not named fields.
// Facebook's "extinfo": version, package, version code, version name, OS version,
// model, locale, time zone, carrier, width, height, density, ...
var extinfo = []flow.Kind{"", HostApp, "", AppVersion, OSVersion, DeviceModel, Locale, Timezone, Carrier, ScreenSize, ScreenSize}

func positional(v decode.Value) (flow.Kind, bool) {
	if !strings.EqualFold(v.Key, "extinfo") || !strings.HasSuffix(v.Path, "]") {
		return "", false
	}
	i := strings.LastIndexByte(v.Path, '[')
	n, err := strconv.Atoi(v.Path[i+1 : len(v.Path)-1])
	if err != nil || n >= len(extinfo) {
		return "", true
	}
	return extinfo[n], true
}

// coordinates reports a latitude and a longitude as one place: the pair
// replaces its halves. Integers are degrees scaled by 1e5 to 1e7, as
// location SDKs send them to save bytes.
func (d *Detector) coordinates(lat, lng *decode.Value, hits *[]Hit) {
	la, lo, ok := coordPair(lat.Text, lng.Text)
	if !ok {
		return
	}
	pair := lat.Text + "," + lng.Text
	if allDigitsSigned(lat.Text) { // scaled: written back in degrees
		pair = strconv.FormatFloat(la, 'f', -1, 64) + "," + strconv.FormatFloat(lo, 'f', -1, 64)
	}
	method, conf := flow.MethodKey, 0.9
	if d.Known != nil {
		if home, ok := d.Known.NearKnownLocation(la, lo); ok {
			pair, method, conf = home, flow.MethodKnown, 0.95
		}
	}
	kept := (*hits)[:0]
	for _, h := range *hits {
		if h.Kind == Location && (h.Path == lat.Path || h.Path == lng.Path) && h.Method == flow.MethodKey {
			continue
		}
		kept = append(kept, h)
	}
	*hits = append(kept, Hit{Kind: Location, Value: pair, Path: lat.Path, Method: method, Confidence: conf})
}

// coordKey says whether an unknown field name names a latitude ('a') or a
// longitude ('o') by its first or last word: "userLat", "geo_longitude",
// "lng_e6". Words that only contain the letters ("latency", "latest",
// "plate", "salon") do not.
func coordKey(k string) byte {
	var buf [64]byte
	if len(k) > len(buf) || !strings.ContainsAny(k, "lL") { // every such name has an l
		return 0
	}
	b := appendNorm(buf[:0], k)
	n := string(b)
	for _, suffix := range []string{"e5", "e6", "e7"} {
		n = strings.TrimSuffix(n, suffix)
	}
	switch {
	case strings.HasSuffix(n, "latitude") || strings.HasPrefix(n, "latitude") || strings.HasSuffix(n, "lat") && !strings.HasSuffix(n, "plat"):
		return 'a'
	case strings.HasSuffix(n, "longitude") || strings.HasPrefix(n, "longitude") || strings.HasSuffix(n, "lng") || strings.HasSuffix(n, "lon") && !strings.HasSuffix(n, "salon"):
		return 'o'
	}
	return 0
}

// appNames drops a "display name" that sits beside the package name of the
// app in the same object: it is the app's name, not its user's.
func appNames(hits []Hit) []Hit {
	names := false
	for _, h := range hits {
		names = names || h.Kind == PersonName
	}
	if !names {
		return hits
	}
	var objs map[string]bool
	for _, h := range hits {
		if h.Kind == HostApp {
			if objs == nil {
				objs = map[string]bool{}
			}
			objs[objectOf(h.Path)] = true
		}
	}
	if objs == nil {
		return hits
	}
	kept := hits[:0]
	for _, h := range hits {
		if h.Kind == PersonName && h.Method == flow.MethodKey && objs[objectOf(h.Path)] && normKey(h.Path[len(objectOf(h.Path)):]) == "displayname" {
			continue
		}
		kept = append(kept, h)
	}
	return kept
}

// objectOf is the path of the object a value's field belongs to: everything
// up to the field's name.
func objectOf(p string) string {
	if i := strings.LastIndexAny(p, ".:"); i >= 0 {
		return p[:i+1]
	}
	return ""
}

// requestRegion finds the country a request says its phone is in: the
// country of a locale tag ("en_IN"), else a country code under a field that
// names a country. "" when it says none, or several.
func requestRegion(vals []decode.Value) string {
	found := ""
	for _, v := range vals {
		t := strings.TrimSpace(v.Text)
		c := ""
		switch {
		case localeTag(t):
			c = strings.ToUpper(t[len(t)-2:])
		case len(t) >= 14 && len(t) <= 15 && allDigits(t) && mccCountry[t[:3]] != "" && strings.Contains(strings.ToLower(v.Key), "imsi"):
			c = mccCountry[t[:3]] // the SIM's home network
		case len(t) == 2 && countries[strings.ToUpper(t)]:
			var buf [64]byte
			if len(v.Key) <= len(buf) {
				switch k := string(appendNorm(buf[:0], v.Key)); k {
				case "country", "countrycode", "cc", "region", "simcountry", "networkcountry", "rc", "co":
					c = strings.ToUpper(t)
				}
			}
		}
		if c == "" {
			continue
		}
		if found != "" && found != c {
			return ""
		}
		found = c
	}
	return found
}
