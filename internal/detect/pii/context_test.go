package pii

import (
	"fmt"
	"sort"
	"testing"

	"phonehome/internal/decode"
)

func kindsOf(hits []Hit) string {
	var ks []string
	for _, h := range hits {
		ks = append(ks, string(h.Kind)+"="+h.Value)
	}
	sort.Strings(ks)
	return fmt.Sprint(ks)
}

// TestContextEvidence: what the object, the path or the header around a
// value says of it.
func TestContextEvidence(t *testing.T) {
	d := New("")
	cases := []struct {
		name string
		vals []decode.Value
		want string
	}{
		{"Segment's context.network.wifi", []decode.Value{{Path: "body › json:context.network.wifi", Key: "wifi", Parent: "network", Text: "true"}},
			"[network_type=wifi]"},
		{"wifi false says nothing", []decode.Value{{Path: "body › json:wifi", Key: "wifi", Text: "false"}}, "[]"},
		{"a profile's name", []decode.Value{{Path: "body › json:$set.$name", Key: "$name", Parent: "$set", Text: "Maria Gonzalez"}},
			"[person_name=Maria Gonzalez]"},
		{"a product's name", []decode.Value{{Path: "body › json:item.name", Key: "name", Parent: "item", Text: "Blue Shirt"}}, "[]"},
		{"OneSignal's player in the path", []decode.Value{{Path: "path[0]", Text: "api"}, {Path: "path[1]", Text: "v1"},
			{Path: "path[2]", Text: "players"}, {Path: "path[3]", Text: "2c3e5b9a-7d41-4c8e-9f0a-1b2c3d4e5f60"}},
			"[install_id=2c3e5b9a-7d41-4c8e-9f0a-1b2c3d4e5f60]"},
		{"an action after the collection", []decode.Value{{Path: "path[0]", Text: "users"}, {Path: "path[1]", Text: "settings"}}, "[]"},
		{"Firebase's heartbeat header", []decode.Value{{Path: "header:x-firebase-client", Key: "x-firebase-client",
			Text: "fire-android/33 fire-core/20.4.2 device-name/lynx device-model/lynx device-brand/google"}},
			"[device_model=lynx device_model=lynx manufacturer=google os_version=33]"},
		{"a YouTube video", []decode.Value{{Path: "body › json:event", Key: "event", Text: "youtube_play"},
			{Path: "body › json:video_id", Key: "video_id", Text: "dQw4w9WgXcQ"}},
			"[visited_url=https://www.youtube.com/watch?v=dQw4w9WgXcQ]"},
		{"a video ID of another site", []decode.Value{{Path: "body › json:video_id", Key: "video_id", Text: "dQw4w9WgXcQ"}}, "[]"},
		{"a Wi-Fi scan list", []decode.Value{{Path: "query:wl", Key: "wl", Text: "a4:2b:b0:11:22:33,-51,Cafe Linden;f0:9f:c2:aa:bb:cc,-77,FRITZ!Box 7590"}},
			"[wifi_ssid=Cafe Linden wifi_ssid=FRITZ!Box 7590]"},
		{"sn beside an IMEI", []decode.Value{{Path: "body › json:sn", Key: "sn", Text: "R58N12ABCDE"}, {Path: "body › json:imei", Key: "imei", Text: "356938035643809"}},
			"[imei=356938035643809 serial_number=R58N12ABCDE]"},
		{"sn alone is a sequence number", []decode.Value{{Path: "body › json:sn", Key: "sn", Text: "R58N12ABCDE"}}, "[]"},
		{"a country code", []decode.Value{{Path: "body › json:cc", Key: "cc", Text: "BR"}}, "[locale=BR]"},
		{"cc that is no country", []decode.Value{{Path: "body › json:cc", Key: "cc", Text: "bob@example.org"}}, "[email=bob@example.org]"},
		{"la as a language", []decode.Value{{Path: "query:la", Key: "la", Text: "pt"}}, "[locale=pt]"},
		{"la as a latitude is no language", []decode.Value{{Path: "query:la", Key: "la", Text: "-23.5505"}}, "[]"},
		{"a session ID under sid", []decode.Value{{Path: "body › json:logs[0].sid", Key: "sid", Parent: "logs", Text: "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"}}, "[]"},
		{"Unity's advertisingTrackingId", []decode.Value{{Path: "query:advertisingTrackingId", Key: "advertisingTrackingId", Text: "8d7c6b5a-4f3e-4d2c-9b1a-0f9e8d7c6b5a"}},
			"[advertising_id=8d7c6b5a-4f3e-4d2c-9b1a-0f9e8d7c6b5a]"},
		{"Android's App Set ID", []decode.Value{{Path: "body › json:android_app_set_id", Key: "android_app_set_id", Text: "a4b5c6d7-e8f9-4a0b-9c1d-2e3f4a5b6c7d"}},
			"[install_id=a4b5c6d7-e8f9-4a0b-9c1d-2e3f4a5b6c7d]"},
	}
	for _, c := range cases {
		if got := kindsOf(d.Scan(c.vals)); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

func TestOwnerOfDeviceName(t *testing.T) {
	for name, want := range map[string]string{
		"Maria's iPhone": "Maria", "Marias-iPhone": "Maria", "Arjun’s MacBook Pro": "Arjun", "iPhone von Anna": "Anna",
		"Galaxy-S21-de-Ana": "Ana", "iPhone de María": "María", "DESKTOP-5H3K2L": "", "Living Room TV": "", "Chromecast": "",
	} {
		got, _ := ownerOf(name)
		if got != want {
			t.Errorf("%q: owner %q, want %q", name, got, want)
		}
	}
}
