package pii

import (
	"math"
	"strings"

	"phonehome/internal/flow"
)

// Evidence from the value: what a value is, whatever its field is called.
// Each test validates the shape (check digits, real code tables) so that the
// key is one piece of evidence among others, not the only one. The tables
// below are standards (ISO 639-1, ISO 3166-1, ITU-T E.212, the IANA time zone
// areas), not names of any SDK's fields.

// ISO 639-1 language codes in use on phones.
var languages = set("af am ar as az be bg bn bo bs ca cs cy da de el en eo es et eu fa fi fil fr ga gl gu he hi hr hu hy id in is it iw ja jv ka kk km kn ko ky lo lt lv mk ml mn mr ms mt my nb ne nl nn no or pa pl ps pt ro ru si sk sl sq sr sv sw ta te tg th tk tl tr uk ur uz vi yo zh zu")

// ISO 3166-1 alpha-2 country codes.
var countries = set("AD AE AF AG AL AM AO AR AT AU AZ BA BB BD BE BF BG BH BI BJ BN BO BR BS BT BW BY BZ CA CD CF CG CH CI CL CM CN CO CR CU CV CY CZ DE DJ DK DM DO DZ EC EE EG ER ES ET FI FJ FR GA GB GD GE GH GM GN GQ GR GT GW GY HK HN HR HT HU ID IE IL IN IQ IR IS IT JM JO JP KE KG KH KM KN KP KR KW KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MG MK ML MM MN MO MR MT MU MV MW MX MY MZ NA NE NG NI NL NO NP NZ OM PA PE PG PH PK PL PR PS PT PY QA RO RS RU RW SA SB SC SD SE SG SI SK SL SN SO SR SS SV SY SZ TD TG TH TJ TL TM TN TO TR TT TW TZ UA UG US UY UZ VE VN YE ZA ZM ZW")

// Mobile country codes (ITU-T E.212) of the countries with most phones; an
// MCC-MNC starts with one of them.
var mccs = set("202 204 206 208 214 216 218 219 220 222 226 228 230 231 232 234 235 238 240 242 244 246 247 248 250 255 257 259 260 262 266 268 270 272 274 276 278 280 282 283 284 286 288 293 294 297 302 310 311 312 313 314 315 316 334 338 340 342 344 346 348 350 352 354 356 358 360 362 363 364 365 366 368 370 372 374 376 400 401 402 404 405 406 410 412 413 414 415 416 417 418 419 420 421 422 424 425 426 427 428 429 430 431 432 434 436 437 438 440 441 450 452 454 455 456 457 460 466 467 470 472 502 505 510 514 515 520 525 528 530 536 537 539 540 541 542 544 545 546 547 548 549 550 551 552 553 554 555 602 603 604 605 606 607 608 609 610 611 612 613 614 615 616 617 618 619 620 621 622 623 624 625 626 627 628 629 630 631 632 633 634 635 636 637 638 639 640 641 642 643 645 646 647 648 649 650 651 652 653 654 655 657 659 702 704 706 708 710 712 714 716 722 724 730 732 734 736 738 740 744 746 748 750")

// Countries of the mobile country codes with most subscribers (ITU-T E.212).
var mccCountry = map[string]string{"404": "IN", "405": "IN", "406": "IN", "310": "US", "311": "US", "312": "US", "313": "US",
	"314": "US", "315": "US", "316": "US", "234": "GB", "235": "GB", "262": "DE", "208": "FR", "222": "IT", "214": "ES",
	"204": "NL", "260": "PL", "250": "RU", "255": "UA", "286": "TR", "302": "CA", "334": "MX", "724": "BR", "722": "AR",
	"460": "CN", "440": "JP", "441": "JP", "450": "KR", "510": "ID", "515": "PH", "520": "TH", "452": "VN", "502": "MY",
	"525": "SG", "410": "PK", "470": "BD", "413": "LK", "420": "SA", "424": "AE", "602": "EG", "621": "NG", "639": "KE",
	"655": "ZA", "505": "AU", "530": "NZ"}

// Areas of IANA time zone names ("Asia/Kolkata").
var tzAreas = set("Africa America Antarctica Asia Atlantic Australia Europe Indian Pacific Etc")

// Network types as Android and iOS name them.
var networkTypes = set("wifi wi-fi wlan 2g 3g 4g 5g lte nr edge gprs umts hspa hspa+ hsdpa hsupa evdo cdma gsm cellular ethernet")

// networkType looks v up in networkTypes without allocating.
func networkType(v string) bool {
	var buf [8]byte
	if len(v) > len(buf) {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c >= 'A' && c <= 'Z' {
			c += 32
		}
		buf[i] = c
	}
	return networkTypes[string(buf[:len(v)])]
}

// containsFold reports whether s contains the lowercase word w in any case.
func containsFold(s, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(w)], w) {
			return true
		}
	}
	return false
}

func set(words string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(words) {
		m[w] = true
	}
	return m
}

// localeTag reports whether v is a language with a country ("en_IN", "pt-BR",
// "en_in", "zh-Hans-CN"): a bare "en" or "IN" is too short to say so alone.
func localeTag(v string) bool {
	if len(v) < 5 || len(v) > 10 {
		return false
	}
	i := strings.IndexAny(v, "_-")
	if i < 2 || i > 3 || !languages[v[:i]] {
		return false
	}
	rest := v[i+1:]
	if j := strings.LastIndexAny(rest, "_-"); j >= 0 { // a script between: zh-Hans-CN
		if !letters(rest[:j], 4, 4) {
			return false
		}
		rest = rest[j+1:]
	}
	return len(rest) == 2 && countries[strings.ToUpper(rest)]
}

// timezoneName reports whether v is an IANA zone ("Asia/Kolkata",
// "America/Argentina/Buenos_Aires") or an offset written as one ("GMT+05:30",
// "UTC+5:30", "+05:30").
func timezoneName(v string) bool {
	if area, city, ok := strings.Cut(v, "/"); ok {
		if !tzAreas[area] || len(city) < 3 || len(city) > 40 {
			return false
		}
		for i := 0; i < len(city); i++ {
			c := city[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '/' || c == '-') {
				return false
			}
		}
		return city[0] >= 'A' && city[0] <= 'Z'
	}
	s := v
	if p, ok := strings.CutPrefix(s, "GMT"); ok {
		s = p
	} else if p, ok := strings.CutPrefix(s, "UTC"); ok {
		s = p
	} else if !strings.Contains(s, ":") {
		return false // "+0530" alone is too often something else
	}
	return offset(s)
}

// offset: "+05:30", "-3", "+0530", "+5:30"; hours from -12 to +14, minutes 0, 30 or 45.
func offset(s string) bool {
	if len(s) < 2 || s[0] != '+' && s[0] != '-' {
		return false
	}
	d := strings.Replace(s[1:], ":", "", 1)
	if !allDigits(d) || len(d) > 4 {
		return false
	}
	hours, minutes := d, ""
	if len(d) >= 3 {
		hours, minutes = d[:len(d)-2], d[len(d)-2:]
	}
	if minutes != "" && minutes != "00" && minutes != "30" && minutes != "45" {
		return false
	}
	return atoiSmall(hours) <= 14
}

// datetimeOffset reports whether v is a local date and time with its offset
// ("2024-03-14T09:26:33.618+0530"): the offset gives the time zone away.
func datetimeOffset(v string) bool {
	if len(v) < 16 || len(v) > 40 || v[4] != '-' || !allDigits(v[:4]) {
		return false
	}
	i := strings.LastIndexAny(v, "+-")
	if i < 10 {
		return false
	}
	o := v[i:]
	return (len(o) == 5 || len(o) == 6 && o[3] == ':') && offset(o) && strings.Trim(o[1:], "0:") != ""
}

// mccMNC reports whether v is a mobile network code: a real MCC and a two- or
// three-digit MNC ("40445", "310260").
func mccMNC(v string) bool {
	return (len(v) == 5 || len(v) == 6) && allDigits(v) && mccs[v[:3]]
}

// screenPair reports whether w and h are plausible pixel sides of a phone,
// tablet or monitor screen: never square, and neither side tiny.
func screenPair(w, h string) bool {
	a, b := atoiSmall(w), atoiSmall(h)
	return a >= 240 && b >= 240 && a <= 8000 && b <= 8000 && a != b
}

func atoiSmall(s string) int {
	if !allDigits(s) || len(s) > 5 {
		return -1
	}
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

// entropy is the Shannon entropy of v in bits per character.
func entropy(v string) float64 {
	var counts [256]int
	for i := 0; i < len(v); i++ {
		counts[v[i]]++
	}
	e := 0.0
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / float64(len(v))
			e -= p * math.Log2(p)
		}
	}
	return e
}

// hex16 reports whether v looks like a 64-bit random identifier written in
// hex (an ANDROID_ID, a Xiaomi OAID): 16 hex digits, letters and digits both,
// spread as random digits are. A word or a counter in hex is not.
func hex16(v string) bool {
	if len(v) != 16 || !allHex(v) {
		return false
	}
	letters, digits := 0, 0
	for i := 0; i < len(v); i++ {
		if v[i] >= '0' && v[i] <= '9' {
			digits++
		} else {
			letters++
		}
	}
	return letters >= 3 && digits >= 3 && entropy(v) >= 3.0
}

// Words in a field's name that say its value is made per request, or names
// content or the app rather than the device: a 16-hex value or a UUID there
// is a nonce, a trace, a digest, an article's or the app's own ID.
var ephemeralWords = []string{"session", "trace", "span", "insert", "nonce", "request", "req", "event", "msg", "message",
	"sign", "hash", "token", "secret", "salt", "crc", "etag", "md5", "sha", "commit", "build", "checksum", "cksm", "key",
	"txn", "transaction", "order", "batch", "seq", "random", "rnd", "challenge", "state", "cache", "version", "hmac", "digest",
	"appid", "apikey", "project", "tenant", "campaign", "creative", "placement", "unit", "slot", "template", "product",
	"item", "article", "content", "post", "video", "match", "offer", "sku", "page", "view", "experiment", "variant",
	"layout", "config", "sdk", "correlation", "upload", "file", "job", "task", "call", "visit"}

// Short names that stand for a per-request or per-session value: a
// session, request or event ID ("sid", "rid", "eid").
var ephemeralNames = set("sid rid eid reqid")

func ephemeralKey(norm string) bool {
	if ephemeralNames[norm] {
		return true
	}
	for _, w := range ephemeralWords {
		if strings.Contains(norm, w) {
			return true
		}
	}
	return false
}

// Hash names that SDKs put before or after the name of what they hashed
// ("mac_sha1", "sha1_imei", "idfa_md5").
var hashWords = []string{"sha256", "sha1", "md5", "hashed", "hash"}

// packageList splits v into package names when it is a list of two or more
// of them, comma, semicolon, pipe or space separated.
func packageList(v string) bool {
	if len(v) < 7 || strings.IndexByte(v, '.') < 0 {
		return false
	}
	n := 0
	first := ""
	distinct := false
	for p := range strings.FieldsFuncSeq(v, func(r rune) bool { return r == ',' || r == ';' || r == '|' || r == ' ' }) {
		if !isPackageName(p) {
			return false
		}
		if n == 0 {
			first = p
		} else if p != first {
			distinct = true
		}
		n++
	}
	return n >= 2 && distinct
}

// HostApp is the kind of a hit that names the app whose SDK sends the
// request ("package_name", "app_id"): it says whose flow this is, and is not
// a finding.
const HostApp flow.Kind = "host_app"

// Field names by which a service names another app, on whose behalf it
// reports; every other app field names the sending app itself.
var onBehalfKeys = set("sender senderpackage senderapp callingpackage callingapp callerpackage sourcepackage requestingpackage forpackage onbehalfof")

// Recurrent reports whether a hit rests on a shape that random per-request
// values share (a digest under an identifier's name, 16 hex digits under an
// unknown one): only coming back unchanged in the next request to the same
// field confirms it, and a value that changes there is a nonce.
func Recurrent(h Hit) bool {
	switch h.Kind {
	case IMEI, IMSI, ICCID, SerialNumber, AndroidID, AdvertisingID, MACAddress, InstallID, DeviceID, WifiBSSID:
		return h.Method == flow.MethodPattern && (len(h.Value) == 16 || len(h.Value) == 36) || h.Method == flow.MethodKey && hashOf(h.Value)
	}
	return false
}

// PathShape is a decode path without its array indices ("events[].pkg").
func PathShape(p string) string { return pathShape(p) }

// fcmToken reports whether v is a Firebase Cloud Messaging registration
// token: the installation's ID, a colon, and "APA91b" and a long base64url
// tail. Only one installation of one app has it.
func fcmToken(v string) bool {
	i := strings.Index(v, ":APA91b")
	if i < 8 || i > 64 || len(v)-i < 30 {
		return false
	}
	for j := 0; j < len(v); j++ {
		c := v[j]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_' || c == ':' && j == i) {
			return false
		}
	}
	return true
}

// Plausible reports whether a value is an instance of a kind that other
// knowledge (the endpoint table) says its field carries: the knowledge names
// the kind, the value must still not be a placeholder ("", "null", a zeroed
// advertising ID after an opt-out) or, for an identifier, too short or
// uniform to single anyone out.
func Plausible(kind flow.Kind, v string, numeric bool) bool {
	v = strings.TrimSpace(v)
	switch strings.ToLower(v) {
	case "", "null", "nil", "none", "unknown", "undefined", "n/a", "true", "false", "-":
		return false
	}
	if identifierKinds[kind] || kind == WifiBSSID {
		if strings.Trim(v, "0-:.") == "" {
			return false
		}
		switch kind {
		case AdvertisingID:
			return validAdID(v, numeric)
		case MACAddress, WifiBSSID:
			return validMAC(v, numeric)
		case IMEI:
			return validIMEIOrHash(v, numeric)
		}
		return validID(v, numeric) || len(v) > 256 && !strings.ContainsAny(v, " \n")
	}
	switch kind {
	case VisitedURL:
		return isURL(v)
	case HostApp, SenderApp:
		return validPackage(v, numeric)
	}
	return len(v) <= 200
}

// IdentifierShaped reports whether v looks like a random identifier: letters
// and digits (and the few signs IDs are written with), both kinds of
// character or 15 digits and more, spread as random characters are; not a
// timestamp, a version, a package name, an address or a word.
func IdentifierShaped(v string) bool {
	if !idChars(v) || timestamp(v) || repeated(v) || strings.ContainsAny(v, ".:$") {
		return false
	}
	letters, digits := 0, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			letters++
		}
	}
	if digits == 0 || letters == 0 && digits < 15 {
		return false
	}
	// spread as random characters are: many distinct ones (a bitmap, not
	// an entropy: this runs on every long value of every request)
	var seen [2]uint64
	n := 0
	for i := 0; i < len(v); i++ {
		c := v[i] & 127
		if seen[c>>6]&(1<<(c&63)) == 0 {
			seen[c>>6] |= 1 << (c & 63)
			n++
		}
	}
	return n >= 8 || n*3 >= len(v)
}

// EphemeralField reports whether a field's name (with the object around it)
// says its value is made per request, names content, or is the app's or the
// SDK's own key or certificate: never the device's identifier.
func EphemeralField(parent, key string) bool {
	var buf, kb [96]byte
	n := string(appendNorm(appendNorm(buf[:0], parent), key))
	return ephemeralKey(n) || ephemeralNames[string(appendNorm(kb[:0], key))] || strings.Contains(n, "cert") || strings.Contains(n, "ip")
}
