"""Independent answers for the callback tests, from Python's standard library and
xmltodict (installed by scripts/setup in .venv-test).

stdin: {"form": [b64...], "xml": [b64...], "base64": [text...], "http": [b64...],
        "hmac": [[key_b64, body_b64]...]}
stdout: the same keys with the reference's answers (JSON).
"""
import base64
import binascii
import hashlib
import hmac
import io
import json
import sys
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl

import xmltodict


def form(body):
    pairs = parse_qsl(body.decode("ascii"),
                      keep_blank_values=True, encoding="utf-8", errors="replace")
    out = {}
    for k, v in pairs:
        out.setdefault(k, []).append(v)
    return [[k, v[0] if len(v) == 1 else v] for k, v in out.items()]


def xml(body):
    try:
        return {"ok": xmltodict.parse(body, strip_whitespace=True)}
    except Exception:  # expat: malformed
        return {"error": True}


def lenient_b64(text):
    # RFC 2045: skip characters outside the alphabet, stop at '=', drop an incomplete tail.
    alphabet = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    raw = text.encode("utf-8").split(b"=")[0]
    kept = bytes(c for c in raw if c in alphabet)
    kept = kept[: len(kept) - (len(kept) % 4 == 1)]
    kept += b"=" * (-len(kept) % 4)
    return base64.b64encode(binascii.a2b_base64(kept)).decode() if kept else ""


class Handler(BaseHTTPRequestHandler):
    def __init__(self, data):
        self.rfile = io.BytesIO(data)
        self.raw_requestline = self.rfile.readline(65537)
        self.error = None
        self.parse_request()

    def send_error(self, code, message=None, explain=None):
        self.error = code


def http(data):
    h = Handler(data)
    if h.error or not hasattr(h, "headers"):
        return {"error": True}
    length = h.headers.get("Content-Length")
    body = h.rfile.read(int(length)) if length is not None else h.rfile.read()
    return {"method": h.command, "target": h.path, "headers": [[k, v] for k, v in h.headers.items()],
            "body": base64.b64encode(body).decode()}


def sign(key_b64, body_b64):
    mac = hmac.new(base64.b64decode(key_b64), base64.b64decode(body_b64), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def main():
    q = json.load(sys.stdin)
    out = {
        "form": [form(base64.b64decode(b)) for b in q.get("form", [])],
        "xml": [xml(base64.b64decode(b)) for b in q.get("xml", [])],
        "base64": [lenient_b64(t) for t in q.get("base64", [])],
        "http": [http(base64.b64decode(b)) for b in q.get("http", [])],
        "hmac": [sign(k, b) for k, b in q.get("hmac", [])],
    }
    json.dump(out, sys.stdout, ensure_ascii=False)


main()
