#!/usr/bin/env bash
# Records the capture fixtures with real tools: tcpdump, dumpcap, curl, openssl
# and mitmdump 8.1.1. Needs root (for capturing) and the
# Debian packages tcpdump, tshark (dumpcap), mitmproxy, curl, openssl.
# The outputs are committed; rerun only to refresh them.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

python3 fixture_server.py serve > "$work/server.log" & pids+=($!)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -keyout "$work/key.pem" -out "$work/cert.pem" -subj /CN=phonehome.test \
  -addext subjectAltName=DNS:phonehome.test,DNS:tracking.phonehome.test 2>/dev/null
openssl s_server -accept 18443 -cert "$work/cert.pem" -key "$work/key.pem" -www -quiet & pids+=($!)
sleep 1

H=http://127.0.0.1:18080
traffic_http() {
  curl -s -o /dev/null -o /dev/null -o /dev/null -o /dev/null \
    "$H/getSplashScreenAds?imei=356938035643809&sender=com.miui.systemAdSolution" "$H/big" "$H/chunked" "$H/not-modified"
  curl -s -o /dev/null -d 'sender=com.miui.securitycenter&event=open' "$H/track/v1"
  curl -s -o /dev/null -H 'Transfer-Encoding: chunked' --data-binary @fixture_server.py "$H/upload"
  curl -s -o /dev/null -I "$H/head"
  python3 fixture_server.py pipeline
}
traffic_mixed() {
  curl -s -o /dev/null "http://[::1]:18080/v6?x=1"
  curl -s -o /dev/null -k --resolve tracking.phonehome.test:18443:127.0.0.1 https://tracking.phonehome.test:18443/
  curl -s -o /dev/null -k --http1.1 --resolve phonehome.test:18443:127.0.0.1 https://phonehome.test:18443/
  python3 fixture_server.py dns
}

tcpdump -i lo -U -w http-ethernet.pcap 'tcp port 18080' 2>/dev/null & cap=$!; sleep 1.5
traffic_http; sleep 1; kill $cap; wait $cap || true

tcpdump -i lo -U -s 300 -w snaplen-300.pcap 'tcp port 18080' 2>/dev/null & cap=$!; sleep 1.5
curl -s -o /dev/null "$H/big"; curl -s -o /dev/null "$H/getSplashScreenAds?after=snap"; sleep 1; kill $cap; wait $cap || true

tcpdump -i any -U -w mixed-sll2.pcap 'port 18080 or port 18443 or port 53' 2>/dev/null & cap=$!; sleep 1.5
traffic_mixed; sleep 1; kill $cap; wait $cap || true

tcpdump -i any -y LINUX_SLL -U -w mixed-sll.pcap 'port 18080 or port 18443 or port 53' 2>/dev/null & cap=$!; sleep 1.5
traffic_mixed; sleep 1; kill $cap; wait $cap || true

dumpcap -q -i lo -f 'port 18080 or port 18443 or port 53' -w "$work/mixed.pcapng" 2>/dev/null & cap=$!; sleep 2
traffic_mixed; traffic_http; sleep 1; kill $cap; wait $cap || true
cp "$work/mixed.pcapng" mixed.pcapng

# The same packets with nanosecond timestamps.
tcpdump -r http-ethernet.pcap --time-stamp-precision=nano -w http-ethernet-nanosec.pcap 2>/dev/null

# A file cut in the middle of a packet, as a crashed capture leaves it.
head -c 20000 http-ethernet.pcap > truncated.pcap

# mitmproxy: explicit proxy in front of the same servers.
mitmdump -q --listen-host 127.0.0.1 -p 18081 --ssl-insecure -w mitmdump-8.1.1.flows & mp=$!
sleep 3
P="-x http://127.0.0.1:18081"
curl -s -o /dev/null $P "$H/getSplashScreenAds?imei=356938035643809"
curl -s -o /dev/null $P -d 'sender=com.miui.systemAdSolution&event=music_open' "$H/track/v1"
curl -s -o /dev/null $P -k "https://localhost:18443/track/v1?sender=com.miui.securitycenter"
curl -s -o /dev/null $P -H 'Content-Type: application/octet-stream' --data-binary $'\x1f\x8b\x08\x00binary' "$H/upload"
sleep 1; kill -TERM $mp; wait $mp || true
ls -l *.pcap *.pcapng *.flows

# QUIC: Chromium forced to speak HTTP/3 to a name mapped to loopback. A UDP
# socket takes the packets without answering, so Chromium sends its whole
# ClientHello (two Initial packets) and retries; the Initials carry the name.
python3 -c 'import socket,time; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(("127.0.0.1",443)); time.sleep(12)' & pids+=($!)
tcpdump -i lo -U -w quic-chromium.pcap 'udp port 443' 2>/dev/null & cap=$!; sleep 1.5
profile=$(mktemp -d)
timeout 8 chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile" --enable-quic \
  --origin-to-force-quic-on=quic.phonehome.test:443 --host-resolver-rules='MAP quic.phonehome.test 127.0.0.1' \
  --dump-dom https://quic.phonehome.test/ >/dev/null 2>&1 || true
rm -rf "$profile"; sleep 1; kill $cap; wait $cap || true
