"""Small HTTP/1.1 and DNS servers and clients used to make the capture fixtures.

Run only by make-fixtures.sh; the fixtures it records are committed.
"""
import http.server, socket, socketserver, struct, sys, threading, time

BODY = b'{"ads":[{"id":1,"url":"http://ad.example/x"}],"imei":"356938035643809"}'

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_HEAD(self):
        self.send_response(200); self.send_header("Content-Length", "1234"); self.end_headers()
    def do_GET(self):
        if self.path.startswith("/chunked"):
            self.send_response(200); self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Content-Type", "application/json"); self.end_headers()
            for _ in range(3):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(BODY), BODY))
            self.wfile.write(b"0\r\n\r\n"); return
        if self.path.startswith("/not-modified"):
            self.send_response(304); self.end_headers(); return
        body = BODY * (1500 if self.path.startswith("/big") else 1)
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/json"); self.end_headers(); self.wfile.write(body)
    def do_POST(self):
        if self.headers.get("Transfer-Encoding") == "chunked":
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline(); break
                self.rfile.read(size); self.rfile.readline()
        else:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204); self.end_headers()
    def log_message(self, *a): pass

class V6Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6

def dns_answer(q):
    ident = q[:2]; qd_end = 12
    while q[qd_end] != 0: qd_end += q[qd_end] + 1
    question = q[12:qd_end + 5]
    qtype = struct.unpack("!H", q[qd_end + 1:qd_end + 3])[0]
    if qtype == 28:
        rr = b"\xc0\x0c" + struct.pack("!HHIH", 28, 1, 60, 16) + socket.inet_pton(socket.AF_INET6, "fd00::23")
    else:
        rr = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton("192.0.2.23")
    return ident + b"\x81\x80" + struct.pack("!HHHH", 1, 1, 0, 0) + question + rr

def dns_query(name, qtype, ident):
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", qtype, 1)

def serve_dns(addr):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(addr)
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind(addr); t.listen()
    def udp():
        while True:
            q, peer = u.recvfrom(512); u.sendto(dns_answer(q), peer)
    def tcp():
        while True:
            c, _ = t.accept()
            n = struct.unpack("!H", c.recv(2))[0]; q = c.recv(n)
            a = dns_answer(q); c.sendall(struct.pack("!H", len(a)) + a); c.close()
    threading.Thread(target=udp, daemon=True).start()
    threading.Thread(target=tcp, daemon=True).start()

def main():
    cmd = sys.argv[1]
    if cmd == "serve":
        http4 = http.server.ThreadingHTTPServer(("127.0.0.1", 18080), H)
        http6 = V6Server(("::1", 18080), H)
        for s in (http4, http6):
            threading.Thread(target=s.serve_forever, daemon=True).start()
        serve_dns(("127.0.0.2", 53))
        print("ready", flush=True)
        while True: time.sleep(60)
    elif cmd == "dns":
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(2)
        for i, (name, qt) in enumerate([("tracking.intl.miui.com", 1), ("api.ad.intl.xiaomi.com", 1), ("tracking.intl.miui.com", 28)]):
            u.sendto(dns_query(name, qt, 0x1000 + i), ("127.0.0.2", 53)); u.recvfrom(512)
        t = socket.create_connection(("127.0.0.2", 53))
        q = dns_query("us.micardapi.micloud.xiaomi.net", 1, 0x2000)
        t.sendall(struct.pack("!H", len(q)) + q); t.recv(512); t.close()
    elif cmd == "pipeline":
        c = socket.create_connection(("127.0.0.1", 18080))
        c.sendall(b"GET /pipelined/1 HTTP/1.1\r\nHost: pipeline.test\r\n\r\n"
                  b"GET /pipelined/2 HTTP/1.1\r\nHost: pipeline.test\r\n\r\n"
                  b"HEAD /pipelined/3 HTTP/1.1\r\nHost: pipeline.test\r\nConnection: close\r\n\r\n")
        while c.recv(65536): pass
        c.close()

main()
