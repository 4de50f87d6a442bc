package pii

import (
	"strings"

	"phonehome/internal/decode"
	"phonehome/internal/flow"
)

// Evidence from the context of a value: what the object, the event or the
// header around it says. Each rule rests on a convention of a platform or a
// widespread SDK (Firebase's heartbeat header, YouTube's video IDs, REST
// paths), not on one app's field names.

// Objects whose "name" is a person's: a user profile ("$set" is the profile
// update of Mixpanel-style APIs), an account, a customer.
var personObjects = set("set user userinfo userprofile profile person customer account owner me member identity traits")

var (
	nameKeys   = set("name")
	videoKeys  = set("videoid youtubeid ytid youtubevideoid ytvideoid vid")
	serialKeys = set("sn sno serialno")
)

// keyIn reports whether a field's name, normalised, is in a set, without
// allocating: these tests run on every value of every request.
func keyIn(k string, names map[string]bool) bool {
	var b [48]byte
	return len(k) <= len(b) && names[string(appendNorm(b[:0], k))]
}

// profileName reports whether a "name" field sits in a person's object and
// reads as a first and a last name.
func profileName(v decode.Value, text string) bool {
	if v.Parent == "" || !keyIn(v.Key, nameKeys) || !keyIn(v.Parent, personObjects) {
		return false
	}
	return validName(text, v.Numeric) && strings.Count(strings.TrimSpace(text), " ") >= 1
}

// wifiFlag reports whether a boolean says the device is on Wi-Fi: "$wifi":
// true, "isWifi": true (Mixpanel, Segment's context.network.wifi).
func wifiFlag(v decode.Value, text string) bool {
	return text == "true" && keyIn(v.Key, wifiKeys)
}

var wifiKeys = set("wifi iswifi onwifi wificonnected usingwifi")

// Collections of REST paths whose next segment is the ID of one of them:
// "/installations/{FID}", "/players/{id}", "/devices/{id}", "/users/{id}".
var collectionKinds = map[string]flow.Kind{"installations": InstallID, "instances": InstallID, "players": InstallID,
	"subscribers": InstallID, "devices": DeviceID, "device": DeviceID, "users": AccountID, "user": AccountID,
	"accounts": AccountID, "members": AccountID, "customers": AccountID, "profiles": AccountID}

// pathID reports what kind of ID a path segment is, by the collection
// segment before it; the segment must look like an ID (letters and digits,
// at least eight, not a word).
func pathID(prev, seg string) (flow.Kind, bool) {
	kind, ok := collectionKinds[strings.ToLower(prev)]
	if !ok || len(seg) < 8 || !idChars(seg) || repeated(seg) || timestamp(seg) {
		return "", false
	}
	digits := 0
	for i := 0; i < len(seg); i++ {
		if seg[i] >= '0' && seg[i] <= '9' {
			digits++
		}
	}
	if digits == 0 || strings.ContainsAny(seg, ".:") {
		return "", false // a word, a file, an action ("authTokens:generate")
	}
	return kind, true
}

// Tokens of Firebase's heartbeat header (x-firebase-client:
// "fire-android/30 device-model/mojito device-brand/Redmi"), and of headers
// written like it.
var headerTokens = map[string]flow.Kind{"device-model": DeviceModel, "device-name": DeviceModel, "device-brand": Manufacturer,
	"fire-android": OSVersion}

func (d *Detector) tokenHeader(v decode.Value, text string, add func(Hit)) bool {
	if !strings.HasPrefix(v.Path, "header:") || !strings.Contains(text, "device-") {
		return false
	}
	found := false
	for _, tok := range strings.Fields(text) {
		name, val, ok := strings.Cut(tok, "/")
		if kind := headerTokens[name]; ok && kind != "" && val != "" {
			add(Hit{Kind: kind, Value: val, Path: v.Path, Method: flow.MethodPattern, Confidence: 0.85,
				Why: "the " + name + " token of a header written as Firebase's heartbeat (x-firebase-client) writes its tokens"})
			found = true
		}
	}
	return found
}

// youTubeID reports whether a video ID field holds a YouTube video's ID (11
// characters of base64url) in a request that speaks of YouTube: the video
// watched, as its address.
func youTubeID(v decode.Value, text string, mentions func() bool) (string, bool) {
	if len(text) != 11 || !keyIn(v.Key, videoKeys) {
		return "", false
	}
	for i := 0; i < len(text); i++ {
		c := text[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return "", false
		}
	}
	if !mentions() {
		return "", false
	}
	return "https://www.youtube.com/watch?v=" + text, true
}

// mentionsYouTube reports whether any value of the request names YouTube.
func mentionsYouTube(vals []decode.Value) bool {
	for _, v := range vals {
		if containsFold(v.Text, "youtube") || containsFold(v.Key, "youtube") {
			return true
		}
	}
	return false
}

// scanList finds the networks in a Wi-Fi scan list written as entries of a
// BSSID, a signal and an SSID ("50:c7:bf:1a:1b:79,-43,Home|e8:65:...,-68,Cafe"):
// every name beside a MAC address is a network's name.
func scanList(text string) []string {
	// a list starts with its first BSSID: the cheap test, as this runs on
	// every value
	if len(text) < 20 || text[2] != ':' && text[2] != '-' || !strings.ContainsAny(text, "|;,") {
		return nil
	}
	var ssids []string
	for entry := range strings.FieldsFuncSeq(text, func(r rune) bool { return r == '|' || r == ';' }) {
		parts := strings.Split(entry, ",")
		if len(parts) < 2 || !validMAC(strings.TrimSpace(parts[0]), false) || hashOf(parts[0]) {
			continue
		}
		for _, p := range parts[1:] {
			p = strings.TrimSpace(p)
			if p == "" || allDigitsSigned(p) || validMAC(p, false) || len(p) > 32 {
				continue
			}
			ssids = append(ssids, p)
		}
	}
	return ssids
}

// hardwareKinds are identifiers a device's hardware or SIM carries: a short
// "sn" beside them is the device's serial number.
var hardwareKinds = map[flow.Kind]bool{IMEI: true, IMSI: true, ICCID: true, MACAddress: true, AndroidID: true}

// serialBeside adds the serial number of an ambiguous short field ("sn")
// when a hardware identifier sits in the same object.
func serialBeside(cands []decode.Value, hits []Hit) []Hit {
	for _, c := range cands {
		obj := objectOf(c.Path)
		for _, h := range hits {
			if hardwareKinds[h.Kind] && objectOf(h.Path) == obj {
				hits = append(hits, Hit{Kind: SerialNumber, Value: strings.TrimSpace(c.Text), Path: c.Path, Method: flow.MethodInference,
					Confidence: 0.75, Why: "a short serial-number field beside the device's hardware identifiers in the same object"})
				break
			}
		}
	}
	return hits
}

// serialKey: names that mean a serial number only beside hardware IDs.
func serialKey(v decode.Value, text string) bool {
	return len(text) >= 6 && len(text) <= 20 && len(v.Key) <= 9 && keyIn(v.Key, serialKeys) && idChars(text) && !timestamp(text) && !repeated(text)
}

// Fields of a LAN announcement (package pcap) that name the device: the
// name its owner gave it, which is often the owner's name too.
var lanNameKeys = set("mdnsinstance mdnshostname llmnrhostname netbiosname ssdpxfriendlyname ssdpfriendlyname mdnstxtfn mdnstxtname")

// lanName reports whether a value is a device's name in a LAN announcement.
func lanName(v decode.Value) bool {
	return strings.HasPrefix(v.Path, "header:") && keyIn(v.Key, lanNameKeys)
}

// Device names that say whose device it is: "Arjun's iPhone", "Arjuns-iPhone",
// "iPhone von Anna", "iPhone de María", "Galaxy-S21-de-Ana".
var deviceWords = set("iphone ipad ipod macbook mac imac watch galaxy pixel phone android laptop pc desktop tablet tv pro air mini")

// ownerOf finds the owner's first name in a device's name.
func ownerOf(name string) (string, bool) {
	n := strings.NewReplacer("’", "'", "_", " ", "-", " ").Replace(strings.TrimSpace(name))
	words := strings.Fields(n)
	if len(words) < 2 {
		return "", false
	}
	first, _ := strings.CutSuffix(words[0], "'s")
	if first != words[0] && deviceWords[strings.ToLower(words[1])] && validName(first, false) {
		return first, true // Arjun's iPhone
	}
	if strings.HasSuffix(first, "s") && len(first) > 3 && deviceWords[strings.ToLower(words[1])] && first[0] >= 'A' && first[0] <= 'Z' {
		return first[:len(first)-1], true // Arjuns-iPhone: the apostrophe a host name cannot hold
	}
	for i := 1; i+1 < len(words); i++ {
		switch strings.ToLower(words[i]) {
		case "von", "de", "di", "da", "van", "of":
			if deviceWords[strings.ToLower(words[i-1])] || i >= 2 && deviceWords[strings.ToLower(words[0])] {
				if owner := words[i+1]; validName(owner, false) && owner[0] >= 'A' && owner[0] <= 'Z' || owner[0] > 0x7f {
					return owner, true
				}
			}
		}
	}
	return "", false
}
