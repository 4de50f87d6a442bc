// Package pii recognises personal data in decoded request values: by the names
// SDKs give their fields (gaid, android_id, lat, ssid, ...) and by the shape of
// values, validated (Luhn for IMEI, phone numbers parsed, MAC placeholders
// excluded), so that nonces, timestamps and hashes of content are not taken
// for identifiers.
package pii

// Kinds, with the names used in machine-readable output.
const (
	IMEI          = "imei"
	IMSI          = "imsi"
	ICCID         = "iccid"
	SerialNumber  = "serial_number"
	AndroidID     = "android_id"
	AdvertisingID = "advertising_id"
	MACAddress    = "mac_address"
	InstallID     = "install_id"
	DeviceID      = "device_id"

	PhoneNumber = "phone_number"
	Email       = "email"
	AccountID   = "account_id"
	PersonName  = "person_name"
	Password    = "password"

	Location  = "location"
	WifiSSID  = "wifi_ssid"
	WifiBSSID = "wifi_bssid"

	VisitedURL  = "visited_url"
	SearchQuery = "search_query"
	AppList     = "app_list"
	Contact     = "contact"

	DeviceModel  = "device_model"
	Manufacturer = "manufacturer"
	OSVersion    = "os_version"
	AppVersion   = "app_version"
	Locale       = "locale"
	Timezone     = "timezone"
	Carrier      = "carrier"
	NetworkType  = "network_type"
	ScreenSize   = "screen_size"

	SenderApp = "sender_app"
)

// Fingerprint reports whether a kind only describes the device or app; such
// findings matter only beside an identifying or sensitive one.
func Fingerprint(kind string) bool {
	switch kind {
	case DeviceModel, Manufacturer, OSVersion, AppVersion, Locale, Timezone, Carrier, NetworkType, ScreenSize, SenderApp:
		return true
	}
	return false
}

// Kinds lists every kind in a stable order.
var Kinds = []string{IMEI, IMSI, ICCID, SerialNumber, AndroidID, AdvertisingID, MACAddress, InstallID, DeviceID,
	PhoneNumber, Email, AccountID, PersonName, Password, Location, WifiSSID, WifiBSSID,
	VisitedURL, SearchQuery, AppList, Contact,
	DeviceModel, Manufacturer, OSVersion, AppVersion, Locale, Timezone, Carrier, NetworkType, ScreenSize, SenderApp}

// How a finding was made.
const (
	ByPattern   = "pattern"
	ByKey       = "key"
	ByKnown     = "known"
	ByInference = "inference"
)
