package proxy

import (
	"encoding/pem"
	"html/template"
	"net/http"
	"strings"
)

// CertHost is the name a device browses to, through the proxy, to fetch
// phonehome's CA certificate and the instructions to install it.
const CertHost = "phonehome.cert"

var certPage = template.Must(template.New("cert").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Install phonehome's certificate</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:42em;margin:1em auto;padding:0 1em}code{word-break:break-all}
a.dl{display:inline-block;margin:.2em .5em .2em 0;padding:.4em .8em;border:1px solid #888;border-radius:.4em;text-decoration:none}</style>
</head><body>
<h1>Install phonehome's certificate</h1>
<p>phonehome shows what this device sends home. To read encrypted (HTTPS) traffic it needs this device to trust its
certificate authority. Install it only on a device you own, and remove it when you are done.</p>
<p>Fingerprint (SHA-256): <code>{{.Fingerprint}}</code><br>Check that it matches what <code>phonehome ca</code> prints.</p>
<p><a class="dl" href="/ca.crt">ca.crt</a><a class="dl" href="/ca.pem">ca.pem</a><a class="dl" href="/ca.der">ca.der</a></p>
<h2>Android</h2>
<p>Download <a href="/ca.crt">ca.crt</a>, then Settings › Security › Encryption &amp; credentials › Install a certificate ›
CA certificate (the path differs by vendor; search settings for "certificate").</p>
<p><strong>Android 7 and later:</strong> apps trust certificates you install only if they opt in. The browser and many
apps will not use it: their HTTPS traffic then shows as "not trusted / pinned" and passes through unread. System
apps and apps built to trust user certificates are readable. Rooted devices can install it as a system certificate.</p>
<h2>iPhone and iPad</h2>
<p>Open <a href="/ca.pem">ca.pem</a> in Safari and allow the profile, install it in Settings › General › VPN &amp; Device
Management, then turn on full trust in Settings › General › About › Certificate Trust Settings.</p>
<h2>Windows</h2>
<p>Open <a href="/ca.crt">ca.crt</a> › Install Certificate › Current User › Place all certificates in: Trusted Root
Certification Authorities.</p>
<h2>macOS</h2>
<p>Open <a href="/ca.pem">ca.pem</a> in Keychain Access, then double-click "{{.Subject}}" › Trust › Always Trust.</p>
<h2>Linux</h2>
<p>Debian and Ubuntu: copy <code>ca.crt</code> to <code>/usr/local/share/ca-certificates/</code> and run
<code>sudo update-ca-certificates</code>. Fedora: <code>/etc/pki/ca-trust/source/anchors/</code> and
<code>sudo update-ca-trust</code>.</p>
<h2>Firefox</h2>
<p>Firefox keeps its own list: Settings › Privacy &amp; Security › Certificates › View Certificates › Authorities ›
Import <a href="/ca.pem">ca.pem</a>, and tick "Trust this CA to identify websites".</p>
</body></html>
`))

// ownHost reports whether host names phonehome's own pages.
func ownHost(host string) bool { return strings.EqualFold(strings.TrimSuffix(host, "."), CertHost) }

// servesCertPage reports whether r is for the certificate page, and serves
// it. No flow is made of it: phonehome's own pages are never reported.
func (p *Proxy) servesCertPage(w http.ResponseWriter, r *http.Request) bool {
	if !ownHost(r.URL.Hostname()) {
		return false
	}
	ca := p.opts.Minter.CA()
	switch r.URL.Path {
	case "/ca.der":
		w.Header().Set("Content-Type", "application/x-x509-ca-cert")
		w.Write(ca.Cert.Raw)
	case "/ca.crt", "/ca.pem":
		w.Header().Set("Content-Type", "application/x-x509-ca-cert")
		w.Header().Set("Content-Disposition", `attachment; filename="phonehome`+r.URL.Path[3:]+`"`)
		pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
	case "/", "":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		certPage.Execute(w, struct{ Fingerprint, Subject string }{ca.Fingerprint(), ca.Cert.Subject.CommonName})
	default:
		http.NotFound(w, r)
	}
	return true
}
