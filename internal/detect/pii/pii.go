package pii

import (
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"phonehome/internal/flow"
)

// Hit is one piece of personal data found in a value.
type Hit struct {
	Kind       flow.Kind
	Value      string
	Path       string
	Method     flow.Method
	Confidence float64
	// Why is the evidence that decided, in words (phonehome explain).
	Why string
	// whole: a known value that is the whole of the decoded value.
	whole bool
}

// Detector finds personal data in decoded values. It is safe for concurrent use.
type Detector struct {
	// Region is the ISO country used to parse phone numbers written without a
	// country code ("" accepts only numbers with one).
	Region string
	// Known, if set, holds the person's own values to find in every form.
	Known *Known
	names map[string]*keyInfo // every normalised field name the detector acts on
	keys  keyCache            // what each field name seen so far means
}

// keyInfo is everything the detector knows of one field name, found with one lookup.
type keyInfo struct {
	rule    rule
	hasRule bool
	skip    bool
	pair    byte // 'a' latitude, 'o' longitude, 'w' screen width, 'h' screen height
}

// New returns a detector; region is as for Detector.Region.
func New(region string) *Detector {
	d := &Detector{Region: region, names: map[string]*keyInfo{}}
	info := func(k string) *keyInfo {
		if d.names[k] == nil {
			d.names[k] = &keyInfo{}
		}
		return d.names[k]
	}
	for k, r := range keyTable() {
		ki := info(k)
		ki.rule, ki.hasRule = r, true
	}
	for k, skip := range skipKeys {
		info(k).skip = skip
	}
	for pair, keys := range pairKeys {
		for _, k := range keys {
			info(k).pair = pair
		}
	}
	return d
}

// Field names that matter only in pairs (a coordinate, a screen side).
var pairKeys = map[byte][]string{
	'a': {"lat", "latitude", "geolat", "locationlat"},
	'o': {"lng", "lon", "long", "longitude", "geolng", "geolon", "locationlng", "locationlon"},
	'w': {"screenwidth", "displaywidth", "screenw", "sw", "widthpixels", "xpx", "screenwidthpx", "displaywidthpx"},
	'h': {"screenheight", "displayheight", "screenh", "sh", "heightpixels", "ypx", "screenheightpx", "displayheightpx"},
}

// rule says what a field name means and how its value must look.
type rule struct {
	kind  flow.Kind
	valid func(v string, numeric bool) bool
	conf  float64
}

// normKey lowercases a field name and drops everything but letters and digits,
// so "Android-ID", "android_id" and "androidId" are one key.
func normKey(k string) string { return string(appendNorm(make([]byte, 0, len(k)), k)) }

var (
	reUUID     = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	reMACSep   = regexp.MustCompile(`^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(?:[:-][0-9a-fA-F]{2}){4}$`)
	reEmail    = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}`)
	rePackage  = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]*(\.[a-zA-Z][a-zA-Z0-9_]*)+$`)
	reLatLng   = regexp.MustCompile(`^(?:geo:)?(-?\d{1,2}\.\d{3,})(?:,\s*|;\s*| )(-?\d{1,3}\.\d{3,})$`)
	reTimezone = regexp.MustCompile(`^([A-Z][a-z]+/[A-Za-z_]+|GMT[+-]\d{1,2}(:\d\d)?|UTC[+-]?\d*|[+-]\d{2}:?\d{2}|-?\d{1,5}|[+-]?\d{1,2}\.(?:0|25|5|75))$`)
)

func text(v string, numeric bool) bool {
	switch v {
	case "", "null", "unknown", "0", "true", "false", "none", "n/a":
		return false
	}
	return !numeric && strings.TrimSpace(v) != ""
}

func luhn(s string) bool {
	sum := 0
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if (len(s)-1-i)%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

func repeated(s string) bool { return strings.Count(s, s[:1]) == len(s) }

// IMEIs carry a reporting-body prefix; most in use start with one of these.
var imeiPrefixes = map[string]bool{"01": true, "30": true, "33": true, "35": true, "44": true, "45": true, "49": true,
	"50": true, "51": true, "52": true, "53": true, "54": true, "86": true, "91": true, "98": true, "99": true}

func validIMEI(v string, _ bool) bool {
	return len(v) == 15 && allDigits(v) && luhn(v) && !repeated(v)
}

// hashOf reports whether v looks like a hex MD5, SHA-1 or SHA-256 digest.
func hashOf(v string) bool {
	switch len(v) {
	case 32, 40, 64:
		return allHex(v)
	}
	return false
}

func validIMEIOrHash(v string, n bool) bool { return validIMEI(v, n) || hashOf(v) }

func validIMSI(v string, _ bool) bool {
	return (len(v) == 15 || len(v) == 14) && allDigits(v) && v[0] >= '2' && v[0] <= '7' && !repeated(v)
}

func validICCID(v string, _ bool) bool {
	return len(v) >= 18 && len(v) <= 22 && strings.HasPrefix(v, "89") && allDigits(v[:19])
}

func validAndroidID(v string, _ bool) bool {
	return (len(v) == 16 || len(v) == 15) && allHex(v) && !repeated(v) || hashOf(v)
}

func validAdID(v string, _ bool) bool {
	return reUUID.MatchString(v) && strings.Trim(v, "0-") != "" || hashOf(v) || hex16(v)
}

// placeholder MACs that Android and iOS report when the app may not read the real one.
var placeholderMACs = map[string]bool{"020000000000": true, "000000000000": true, "ffffffffffff": true}

func macDigits(v string) string {
	return strings.ToLower(strings.NewReplacer(":", "", "-", "", ".", "").Replace(v))
}

func validMAC(v string, _ bool) bool {
	if hashOf(v) {
		return true // a MAC's digest is still that MAC
	}
	d := macDigits(v)
	if len(d) != 12 || !allHex(d) || placeholderMACs[d] {
		return false
	}
	return reMACSep.MatchString(v) || len(v) == 12 || len(v) == 14 && strings.Count(v, ".") == 2
}

func validID(v string, numeric bool) bool {
	if !idChars(v) || repeated(v) || timestamp(v) {
		return false
	}
	if numeric && len(v) < 6 {
		return false
	}
	return strings.Trim(v, "0-") != ""
}

// timestamp reports whether v is a Unix time in seconds or milliseconds
// between 2001 and 2039: telemetry is full of them, and they identify nobody.
func timestamp(v string) bool {
	if !allDigits(v) {
		return false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return false
	}
	return len(v) == 10 && n >= 1e9 && n < 2.2e9 || len(v) == 13 && n >= 1e12 && n < 2.2e12
}

func validAccount(v string, numeric bool) bool {
	return validID(v, numeric) || reEmail.MatchString(v)
}

func validName(v string, numeric bool) bool {
	if len(v) == 64 && allHex(v) {
		return true // Facebook's ud[fn], ud[ln]: SHA-256 of the name
	}
	if numeric || len(v) < 2 || len(v) > 60 {
		return false
	}
	for _, r := range v {
		if !(r == ' ' || r == '-' || r == '\'' || r == '.' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r > 0x7f) {
			return false
		}
	}
	return true
}

func validCoord(v string, _ bool) bool {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f == 0 || f < -180 || f > 180 {
		return false
	}
	// Fewer than three decimals (about 100 m) is a region, not a place.
	i := strings.IndexByte(v, '.')
	return i >= 0 && len(v)-i-1 >= 3
}

// coordPair: a latitude and a longitude named as such, in degrees or in
// integer degrees scaled by 1e5, 1e6 or 1e7. Two decimals (about a
// kilometre) are enough when both halves are there: together they are a
// neighbourhood, where one alone is a band around the globe.
func coordPair(lat, lng string) (float64, float64, bool) {
	la, err1 := strconv.ParseFloat(lat, 64)
	lo, err2 := strconv.ParseFloat(lng, 64)
	if err1 != nil || err2 != nil || la == 0 && lo == 0 {
		return 0, 0, false
	}
	if allDigitsSigned(lat) && allDigitsSigned(lng) {
		// The same scale for both, the smallest that makes them degrees.
		for _, scale := range []float64{1e5, 1e6, 1e7} {
			a, o := la/scale, lo/scale
			if a >= -90 && a <= 90 && o >= -180 && o <= 180 && (abs(a) >= 1 || abs(o) >= 1) {
				return a, o, len(strings.TrimLeft(lat, "-")) >= 6 && len(strings.TrimLeft(lng, "-")) >= 6
			}
		}
		return 0, 0, false
	}
	if la < -90 || la > 90 || lo < -180 || lo > 180 {
		return 0, 0, false
	}
	return la, lo, decimals(lat) >= 2 && decimals(lng) >= 2 && decimals(lat)+decimals(lng) >= 4
}

func allDigitsSigned(v string) bool { return allDigits(strings.TrimPrefix(v, "-")) }

func decimals(v string) int {
	i := strings.IndexByte(v, '.')
	if i < 0 || strings.ContainsAny(v, "eE") {
		return 0
	}
	return len(v) - i - 1
}

func validLatLng(v string, _ bool) bool {
	m := reLatLng.FindStringSubmatch(strings.TrimSpace(v))
	if m == nil {
		return false
	}
	lat, _ := strconv.ParseFloat(m[1], 64)
	lng, _ := strconv.ParseFloat(m[2], 64)
	return lat >= -90 && lat <= 90 && lng >= -180 && lng <= 180 && !(lat == 0 && lng == 0)
}

func validURL(v string, _ bool) bool { return isURL(v) }

func validQuery(v string, numeric bool) bool {
	return text(v, numeric) && !isURL(v) && len(v) <= 500 && !allDigits(v)
}

func validPackage(v string, _ bool) bool { return rePackage.MatchString(v) && len(v) <= 200 }

func validScreen(v string, _ bool) bool {
	i := strings.IndexAny(v, "x*×")
	if i < 0 {
		return false
	}
	a := strings.TrimSpace(v[:i])
	_, size := utf8.DecodeRuneInString(v[i:])
	b := strings.TrimSpace(v[i+size:])
	return len(a) >= 3 && len(a) <= 4 && len(b) >= 3 && len(b) <= 4 && allDigits(a) && allDigits(b)
}

func validLocale(v string, _ bool) bool { return isLocale(v) }

// validCountry: an ISO 3166 country code, written in capitals as countries are.
func validCountry(v string, _ bool) bool { return len(v) == 2 && countries[v] }

// validLanguage: an ISO 639-1 language code, in lower case as languages are.
func validLanguage(v string, _ bool) bool { return len(v) >= 2 && len(v) <= 3 && languages[v] }

func validVersion(v string, _ bool) bool {
	return isVersion(v) || strings.Contains(v, " ") && len(v) < 40
}

func validTimezone(v string, _ bool) bool { return reTimezone.MatchString(v) }

// validCarrier: a name, or a network code, which is often sent as a number.
func validCarrier(v string, numeric bool) bool {
	return text(v, numeric) || mccMNC(v) || len(v) == 3 && mccs[v]
}

func validSSID(v string, numeric bool) bool {
	return text(v, numeric) && len(v) <= 32 && v != "<unknown ssid>"
}

// keyTable maps normalised field names to what they carry: the names real
// SDKs use (Firebase, Adjust, AppsFlyer, Facebook, MIUI, Umeng, ...).
func keyTable() map[string]rule {
	keys := map[string]rule{}
	add := func(r rule, names ...string) {
		for _, n := range names {
			keys[normKey(n)] = r
		}
	}
	add(rule{IMEI, validIMEIOrHash, 0.95}, "imei", "imei1", "imei2", "deviceimei", "imeimd5", "imeisha1", "imeisha256", "hashedimei", "meid")
	add(rule{IMSI, validIMSI, 0.9}, "imsi", "subscriberid")
	add(rule{ICCID, validICCID, 0.9}, "iccid", "simserial", "simserialnumber")
	add(rule{SerialNumber, validID, 0.8}, "serial", "serialno", "serialnumber", "buildserial", "devicesn")
	add(rule{AndroidID, validAndroidID, 0.95}, "androidid", "ssaid", "androididmd5", "androididsha1", "aid")
	add(rule{AdvertisingID, validAdID, 0.95}, "gaid", "adid", "advertisingid", "idfa", "rdid", "oaid", "aaid", "gpsadid", "googleadid", "adidmd5", "gaidmd5", "idfamd5", "advertiserid", "googleaid", "googleadvertisingid", "advertisingidentifier", "advertisingtrackingid", "advid", "googleadid")
	add(rule{MACAddress, validMAC, 0.9}, "mac", "macaddress", "wifimac", "macaddr", "macmd5", "devicemac", "btmac", "bluetoothmac")
	add(rule{InstallID, validID, 0.8}, "installid", "instanceid", "installationid", "appinstanceid", "iid", "firebaseinstanceid", "fid", "installuuid", "anonid", "anonymousid", "distinctid", "clientid", "cid", "vid", "visitorid", "androiduuid", "iosuuid", "persistentiosuuid", "webuuid", "randomizedbundletoken", "pushtoken", "fcmtoken", "registrationid", "devicetoken", "apnstoken", "afid", "appsflyerid", "appsetid", "androidappsetid")
	add(rule{DeviceID, validID, 0.8}, "deviceid", "did", "udid", "deviceuuid", "devid", "uniqueid", "hardwareid", "xiaomiid", "hwid", "randomizeddevicetoken")
	add(rule{PhoneNumber, nil, 0.9}, "phone", "phonenumber", "phoneno", "mobile", "mobileno", "msisdn", "tel", "telephone", "number", "callee", "caller", "udph")
	// Facebook's advanced matching (ud[em], ud[ph], ...) and the Conversions
	// API's user_data hash the person's details; the kind is the one hashed.
	add(rule{Email, nil, 0.95}, "email", "emailaddress", "mail", "udem", "useremail", "hashedemail", "emailhash", "emailsha256", "userdataem")
	add(rule{PhoneNumber, nil, 0.9}, "userdataph")
	add(rule{PersonName, validName, 0.7}, "userdatafn", "userdataln")
	add(rule{AdvertisingID, validAdID, 0.9}, "userdatamadid", "udmadid")
	add(rule{AccountID, validAccount, 0.8}, "userdataexternalid", "udexternalid")
	add(rule{AccountID, validAccount, 0.8}, "userid", "uid", "accountid", "miaccount", "miid", "xiaomiaccount", "account", "username", "login", "customerid", "memberid", "externalid", "sub")
	add(rule{PersonName, validName, 0.7}, "firstname", "lastname", "fullname", "givenname", "familyname", "surname", "displayname", "udfn", "udln", "contactname")
	add(rule{Password, text, 0.9}, "password", "passwd", "pwd", "pass", "passcode")
	add(rule{Location, validCoord, 0.85}, "lat", "latitude", "lng", "lon", "long", "longitude", "geolat", "geolng", "geolon")
	add(rule{Location, validLatLng, 0.9}, "loc", "location", "latlng", "latlon", "ll", "geo", "coordinates", "gps")
	add(rule{WifiSSID, validSSID, 0.9}, "ssid", "wifissid", "wifiname", "networkname")
	add(rule{WifiBSSID, validMAC, 0.9}, "bssid", "wifibssid", "apmac", "routermac")
	add(rule{VisitedURL, validURL, 0.85}, "url", "pageurl", "currenturl", "dl", "href", "link", "pagelink", "weburl", "documentlocation", "referrer", "referer", "ref", "dr", "landingurl", "siteurl", "taburl")
	add(rule{SearchQuery, validQuery, 0.85}, "q", "query", "search", "searchquery", "keyword", "keywords", "kw", "searchterm", "term", "searchtext", "wd", "searchkey")
	add(rule{AppList, validPackage, 0.9}, "packagenames", "apps", "installedapps", "applist", "pkglist", "packages", "installedpackages", "applications", "pkgs")
	add(rule{Contact, nil, 0.9}, "contact", "contacts", "contactnumber", "contactphone", "contactlist")
	add(rule{DeviceModel, text, 0.8}, "mdnstxtmodel", "mdnstxtmd", "mdnstxtam")                            // Apple's, Google Cast's TXT model keys
	add(rule{DeviceID, validID, 0.7}, "mdnstxtdeviceid", "mdnstxtid", "mdnstxtpi", "ssdpusn", "mdnstxtcd") // AirPlay's, Cast's device IDs, UPnP's UUID
	add(rule{DeviceModel, text, 0.9}, "model", "devicemodel", "phonemodel", "md", "dm", "hardwaremodel", "productmodel", "mo", "devicename")
	add(rule{Manufacturer, text, 0.9}, "manufacturer", "brand", "make", "devicebrand", "devicemanufacturer", "mf", "devicemake")
	add(rule{OSVersion, validVersion, 0.85}, "osversion", "osv", "androidversion", "osver", "platformversion", "systemversion", "romversion", "miuiversion", "miui", "sdkint", "apilevel", "deviceos")
	add(rule{AppVersion, validVersion, 0.8}, "appversion", "versionname", "appver", "av", "browserversion", "appvername", "versioncode", "appbuild", "clientversion", "appversionname", "gameversion", "appversionstring", "appversionshort")
	add(rule{Locale, validLocale, 0.85}, "locale", "language", "lang", "hl", "lc", "deviceLanguage", "ul", "systemlanguage", "country", "region", "langcode", "userdefaultlanguage", "languagecode")
	// A country or a language alone, under a short name that needs the value
	// to be a real code to mean it.
	add(rule{Locale, validCountry, 0.75}, "cc", "countrycode", "co", "simcountry", "networkcountry", "rc", "countryiso")
	add(rule{Locale, validLanguage, 0.75}, "la", "languagecode", "syslang")
	add(rule{Timezone, validTimezone, 0.85}, "timezone", "tz", "timezoneoffset", "tzoffset", "zone", "timezoneid", "timezoneoffsetminutes")
	add(rule{Carrier, validCarrier, 0.85}, "carrier", "operator", "carriername", "networkoperator", "simoperator", "operatorname", "isp", "mnc", "mcc", "mccmnc")
	add(rule{NetworkType, text, 0.8}, "network", "nettype", "networktype", "connectiontype", "net", "conn", "connectivity", "wifi", "radio", "ct")
	add(rule{ScreenSize, validScreen, 0.85}, "screen", "resolution", "screensize", "sr", "screenresolution", "display", "res", "vp")
	for k := range onBehalfKeys {
		add(rule{SenderApp, validPackage, 0.9}, k)
	}
	add(rule{HostApp, validPackage, 0.9}, "packagename", "package", "pkg", "pkgname", "bundleid", "bundle", "apppackage", "app", "appid", "appkey", "xrequestedwith", "androidpackage", "iosbundle", "packageid", "applicationid")
	return keys
}

// Hand-written character tests: these run on every named value of every
// request, where a regular expression costs ten times as much.

func allDigits(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return true
}

func allHex(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// idChars: 6 to 256 characters of the sets IDs are written in.
func idChars(v string) bool {
	if len(v) < 6 || len(v) > 256 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("_.:=+/$-", c) >= 0) {
			return false
		}
	}
	return true
}

func isURL(v string) bool {
	rest, ok := strings.CutPrefix(v, "https://")
	if !ok {
		rest, ok = strings.CutPrefix(v, "http://")
	}
	return ok && rest != "" && rest[0] != '/' && rest[0] != ' '
}

func letters(v string, min, max int) bool {
	if len(v) < min || len(v) > max {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// isLocale: "en", "en_IN", "de-de", "zh-Hans-CN".
func isLocale(v string) bool {
	if v == "null" {
		return false
	}
	for n := 0; ; n++ {
		i := strings.IndexAny(v, "_-")
		part := v
		if i >= 0 {
			part = v[:i]
		}
		if n == 0 && !letters(part, 2, 3) || n > 0 && !letters(part, 2, 4) || n > 2 {
			return false
		}
		if i < 0 {
			return true
		}
		v = v[i+1:]
	}
}

// isVersion: "7.1.2", "v8.5", "V8.5.4.0.NCCMIED", "14", "3.2-beta".
func isVersion(v string) bool {
	v = strings.TrimPrefix(strings.TrimPrefix(v, "v"), "V")
	i := 0
	for i < len(v) && v[i] >= '0' && v[i] <= '9' {
		i++
	}
	if i == 0 {
		return false
	}
	dots := 0
	for i < len(v) && v[i] == '.' && dots < 4 {
		j := i + 1
		for j < len(v) && v[j] >= '0' && v[j] <= '9' {
			j++
		}
		if j == i+1 {
			break
		}
		i, dots = j, dots+1
	}
	if i == len(v) || dots > 0 && letters(v[i:], 1, 3) { // "4.1.3.7i", "1.0b"
		return true
	}
	if c := v[i]; c != '.' && c != '_' && c != '-' || i+1 == len(v) {
		return false
	}
	for _, c := range v[i+1:] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '.') {
			return false
		}
	}
	return true
}
