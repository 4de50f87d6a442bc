// Package pii recognises personal data in decoded request values: by the names
// SDKs give their fields (gaid, android_id, lat, ssid, ...) and by the shape of
// values, validated (Luhn for IMEI, phone numbers parsed, MAC placeholders
// excluded), so that nonces, timestamps and hashes of content are not taken
// for identifiers.
package pii

import "phonehome/internal/flow"

// Kinds, with the names used in machine-readable output.
const (
	IMEI          flow.Kind = "imei"
	IMSI          flow.Kind = "imsi"
	ICCID         flow.Kind = "iccid"
	SerialNumber  flow.Kind = "serial_number"
	AndroidID     flow.Kind = "android_id"
	AdvertisingID flow.Kind = "advertising_id"
	MACAddress    flow.Kind = "mac_address"
	InstallID     flow.Kind = "install_id"
	DeviceID      flow.Kind = "device_id"

	PhoneNumber flow.Kind = "phone_number"
	Email       flow.Kind = "email"
	AccountID   flow.Kind = "account_id"
	PersonName  flow.Kind = "person_name"
	Password    flow.Kind = "password"

	Location  flow.Kind = "location"
	WifiSSID  flow.Kind = "wifi_ssid"
	WifiBSSID flow.Kind = "wifi_bssid"

	VisitedURL  flow.Kind = "visited_url"
	SearchQuery flow.Kind = "search_query"
	AppList     flow.Kind = "app_list"
	Contact     flow.Kind = "contact"

	DeviceModel  flow.Kind = "device_model"
	Manufacturer flow.Kind = "manufacturer"
	OSVersion    flow.Kind = "os_version"
	AppVersion   flow.Kind = "app_version"
	Locale       flow.Kind = "locale"
	Timezone     flow.Kind = "timezone"
	Carrier      flow.Kind = "carrier"
	NetworkType  flow.Kind = "network_type"
	ScreenSize   flow.Kind = "screen_size"

	SenderApp flow.Kind = "sender_app"
)

// Fingerprint reports whether a kind only describes the device or app; such
// findings matter only beside an identifying or sensitive one.
func Fingerprint(kind flow.Kind) bool {
	switch kind {
	case DeviceModel, Manufacturer, OSVersion, AppVersion, Locale, Timezone, Carrier, NetworkType, ScreenSize, SenderApp:
		return true
	}
	return false
}

// Kinds lists every kind in a stable order.
var Kinds = []flow.Kind{IMEI, IMSI, ICCID, SerialNumber, AndroidID, AdvertisingID, MACAddress, InstallID, DeviceID,
	PhoneNumber, Email, AccountID, PersonName, Password, Location, WifiSSID, WifiBSSID,
	VisitedURL, SearchQuery, AppList, Contact,
	DeviceModel, Manufacturer, OSVersion, AppVersion, Locale, Timezone, Carrier, NetworkType, ScreenSize, SenderApp}
