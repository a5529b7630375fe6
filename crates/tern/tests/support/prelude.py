# Shared by the Python scripts the end-to-end tests run (see `support::python`): results go
# out as one JSON line prefixed with `RESULT `; `Raw` is a bare socket that reads whole replies
# and can switch to TLS in place; `Recorder` is smtplib.SMTP remembering every reply.
import base64, json, smtplib, socket, ssl, sys, time

ARGS = sys.argv[1:]

def emit(**fields):
    print("RESULT " + json.dumps(fields), flush=True)

def tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx

def b64(text):
    return base64.b64encode(text.encode()).decode()

class Raw:
    def __init__(self, port, tls=False, source=None):
        src = (source, 0) if source else None
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=src)
        if tls:
            self.sock = tls_context().wrap_socket(self.sock)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("server closed the connection; unread: %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8")

    def reply(self):
        lines = [self.line()]
        while lines[-1][3:4] == "-":
            lines.append(self.line())
        return "\n".join(lines)

    def cmd(self, line):
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def starttls(self):
        # Whatever followed the 220 in plaintext would be an answer to an injected command.
        if self.buf:
            raise AssertionError("plaintext bytes after the 220: %r" % self.buf)
        self.sock = tls_context().wrap_socket(self.sock)
        return self.sock.version()

    def rest(self):
        data, self.buf = self.buf, b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except (ssl.SSLError, OSError):
                break
            if not chunk:
                break
            data += chunk
        return data.decode("utf-8", "replace")

class Recorder(smtplib.SMTP):
    def __init__(self, port):
        self.replies = []
        super().__init__("127.0.0.1", port, local_hostname="client.example", timeout=30)

    def getreply(self):
        code, text = super().getreply()
        self.replies.append("%d %s" % (code, text.decode("utf-8", "replace")))
        return code, text
