#!/usr/bin/env python3
"""A loopback stand-in for the BigQuery REST API, for the paths the emulator cannot show:
per-row insertErrors, whole-request failures and oversized requests. Every answer has the
shape BigQuery's documentation gives (tabledata.insertAll response, the error object of
the REST API, OAuth 2.0 token response).

Usage: fake_bigquery.py --port-file F --log L [options]
  --fail 503,429,500     statuses for the first insertAll requests, in order
  --max-rows N           a request with more rows gets HTTP 413 (as Google's front end answers)
  --max-bytes N          a larger request gets 400 "Request payload size exceeds the limit"
  --invalid NAME=VALUE   rows whose field NAME is VALUE are invalid; the others of the
                         request are `stopped` (skipInvalidRows false), as BigQuery does
  --public-key PEM       serve /token: check the RS256 assertion with this key (Python
                         `cryptography`) and require the token it hands out
  --table-schema F       the table exists with this schema (`schema.fields` JSON); else 404
  --lose-answer 2,5      these insertAll requests store their rows, then break the connection
jobs.query answers which of the keys in a `WHERE key IN (...)` list were stored.
The log gets one JSON line per request: method, path, and for insertAll the insertIds
and what became of each row.
"""
import argparse
import base64
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None
LOCK = threading.Lock()
STATE = {"inserts": 0, "table": None, "token": "ya29.fake-token-1"}

REASONS = {
    429: ("rateLimitExceeded", "RESOURCE_EXHAUSTED", "Exceeded rate limits: too many api requests per user per method for this user_method."),
    500: ("internalError", "INTERNAL", "An internal error occurred and the request could not be completed."),
    502: ("backendError", "UNAVAILABLE", "Bad gateway."),
    503: ("backendError", "UNAVAILABLE", "The service is currently unavailable."),
    404: ("notFound", "NOT_FOUND", "Not found: Table p:d.t"),
    401: ("authError", "UNAUTHENTICATED", "Request is missing required authentication credential."),
    400: ("badRequest", "INVALID_ARGUMENT", "Request payload size exceeds the limit: 10485760 bytes."),
}


def error_body(code, message=None):
    reason, status, default = REASONS.get(code, ("backendError", "UNKNOWN", "error"))
    m = message or default
    return {"error": {"code": code, "message": m, "errors": [{"message": m, "domain": "global", "reason": reason}], "status": status}}


def log(entry):
    with LOCK:
        with open(ARGS.log, "a") as f:
            f.write(json.dumps(entry) + "\n")


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def authorized(self):
        if not ARGS.public_key:
            return True
        return self.headers.get("Authorization") == "Bearer " + STATE["token"]

    def do_POST(self):
        raw = self.body()
        if self.path == "/token":
            return self.token(raw)
        if not self.authorized():
            log({"method": "POST", "path": self.path, "status": 401})
            return self.reply(401, error_body(401))
        if self.path.endswith("/insertAll"):
            return self.insert_all(raw)
        if self.path.endswith("/queries"):
            return self.query(raw)
        if self.path.endswith("/tables"):
            STATE["table"] = json.loads(raw)
            log({"method": "POST", "path": self.path, "table": STATE["table"]})
            return self.reply(200, STATE["table"])
        log({"method": "POST", "path": self.path})
        return self.reply(404, error_body(404))

    def do_PATCH(self):
        raw = self.body()
        patch = json.loads(raw)
        log({"method": "PATCH", "path": self.path, "patch": patch})
        STATE["table"] = {**(STATE["table"] or {}), **patch}
        return self.reply(200, STATE["table"])

    def do_GET(self):
        if not self.authorized():
            return self.reply(401, error_body(401))
        log({"method": "GET", "path": self.path})
        if "/tables/" in self.path:
            if STATE["table"] is None:
                return self.reply(404, error_body(404))
            return self.reply(200, STATE["table"])
        if "/datasets/" in self.path:
            return self.reply(200, {"kind": "bigquery#dataset"})
        return self.reply(404, error_body(404))

    def query(self, raw):
        """jobs.query of `SELECT DISTINCT key FROM t WHERE key IN ('a', ...)`: the keys stored."""
        import re
        sql = json.loads(raw)["query"]
        asked = re.findall(r"'((?:[^'\\]|\\.)*)'", sql.split(" IN ", 1)[1]) if " IN " in sql else []
        with LOCK:
            stored = set(STATE.setdefault("stored", set()))
        found = [k for k in dict.fromkeys(asked) if k in stored]
        log({"method": "POST", "path": self.path, "asked": len(asked), "found": len(found)})
        return self.reply(200, {"kind": "bigquery#queryResponse",
                                "schema": {"fields": [{"name": "record_key", "type": "STRING", "mode": "NULLABLE"}]},
                                "jobReference": {"projectId": "sluice-test", "jobId": "job_fake_1", "location": "US"},
                                "totalRows": str(len(found)), "rows": [{"f": [{"v": k}]} for k in found],
                                "totalBytesProcessed": "0", "jobComplete": True, "cacheHit": False})

    def token(self, raw):
        from urllib.parse import parse_qs
        form = parse_qs(raw.decode())
        assertion = form.get("assertion", [""])[0]
        ok = form.get("grant_type") == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
        claims = {}
        try:
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import padding
            head, payload, sig = assertion.split(".")
            key = serialization.load_pem_public_key(open(ARGS.public_key, "rb").read())
            key.verify(b64url_decode(sig), (head + "." + payload).encode(), padding.PKCS1v15(), hashes.SHA256())
            header = json.loads(b64url_decode(head))
            claims = json.loads(b64url_decode(payload))
            ok = ok and header.get("alg") == "RS256" and claims["exp"] - claims["iat"] <= 3600 and claims["exp"] > time.time()
        except Exception as exc:  # noqa: BLE001
            log({"method": "POST", "path": "/token", "verified": False, "problem": type(exc).__name__})
            return self.reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        log({"method": "POST", "path": "/token", "verified": ok, "claims": claims})
        if not ok:
            return self.reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT."})
        return self.reply(200, {"access_token": STATE["token"], "expires_in": 3599, "token_type": "Bearer"})

    def insert_all(self, raw):
        with LOCK:
            STATE["inserts"] += 1
            n = STATE["inserts"]
        request = json.loads(raw)
        rows = request.get("rows", [])
        ids = [r["insertId"] for r in rows]
        # `n`: the request's place in arrival order (the one `--fail` counts in). Requests
        # in flight at once are logged when each is answered, which may be in another order.
        entry = {"method": "POST", "path": self.path, "n": n, "insertIds": ids, "bytes": len(raw),
                 "auth": self.headers.get("Authorization"), "skipInvalidRows": request.get("skipInvalidRows")}
        fails = [int(s) for s in ARGS.fail.split(",") if s] if ARGS.fail else []
        if n <= len(fails):
            code = fails[n - 1]
            entry["status"] = code
            log(entry)
            return self.reply(code, error_body(code))
        if ARGS.max_rows and len(rows) > ARGS.max_rows:
            entry["status"] = 413
            log(entry)
            return self.reply(413, b"<html><title>Error 413 (Request Entity Too Large)!!1</title></html>", "text/html")
        if ARGS.max_bytes and len(raw) > ARGS.max_bytes:
            entry["status"] = 400
            log(entry)
            return self.reply(400, error_body(400))
        errors = []
        invalid = []
        if ARGS.invalid:
            name, value = ARGS.invalid.split("=", 1)
            invalid = [i for i, r in enumerate(rows) if str(r["json"].get(name)) == value]
            for i in range(len(rows)):
                if i in invalid:
                    errors.append({"index": i, "errors": [{"reason": "invalid", "location": name, "debugInfo": "",
                                   "message": f"Cannot convert value \"{value}\" to integer: invalid digits in '{value}'."}]})
                elif invalid:
                    errors.append({"index": i, "errors": [{"reason": "stopped", "location": "", "debugInfo": "", "message": ""}]})
        entry["status"] = 200
        entry["stored"] = [] if invalid else ids
        with LOCK:
            STATE.setdefault("stored", set()).update(entry["stored"])
        entry["invalid"] = [ids[i] for i in invalid]
        if n in ARGS.lose_answer:
            # The rows are stored, but the answer is lost: the connection breaks.
            entry["status"] = "lost"
            log(entry)
            import socket
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        log(entry)
        body = {"kind": "bigquery#tableDataInsertAllResponse"}
        if errors:
            body["insertErrors"] = errors
        return self.reply(200, body)


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--fail", default="")
    p.add_argument("--max-rows", type=int, default=0)
    p.add_argument("--max-bytes", type=int, default=0)
    p.add_argument("--invalid", default="")
    p.add_argument("--public-key", default="")
    p.add_argument("--table-schema", default="")
    p.add_argument("--lose-answer", type=lambda t: [int(x) for x in t.split(",") if x], default=[])
    ARGS = p.parse_args()
    if ARGS.table_schema:
        STATE["table"] = {"kind": "bigquery#table", "schema": {"fields": json.load(open(ARGS.table_schema))}}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(ARGS.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.rename(ARGS.port_file + ".tmp", ARGS.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
