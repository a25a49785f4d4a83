#!/usr/bin/env python3
"""Writes the sample inputs of the pipelines of seeds 000, 002 and 004 and,
independently of sluice's code, the rows sluice must load from them.

    python3 Samples/generate_seed_samples.py     # from the repository root

Deterministic (fixed seed, gzip with mtime 0). Python 3.11 standard library only. A model
written from the pipeline files and docs/ (types, record keys, the callbacks and redact
stages), not a copy of sluice's logic, so that `sluice test` compares two implementations.

Writes:
  Samples/callbacks/telesign/<date>/         Telesign SMS delivery callbacks: JSON Lines
                                             archives and raw HTTP request files (seed 000)
  Samples/dumps/user_phone_number_validations.sql   a pg_dump of the phone validations
  Samples/reference/telesign_sms_status_codes.csv   Telesign's SMS status codes
  Samples/logs/idp/<date>/events.log         identity-proofing events (seed 002)
  Samples/logs/app/<date>/application_json.log   application log with Arkose truth data (seed 004)
  Samples/expected/<pipeline>/               <date>.csv, dead_letters.csv, summary.csv
"""
import base64
import binascii
import datetime
import gzip
import hashlib
import hmac
import json
import os
import random
import uuid

from generate_signup_samples import csv_line, enc, enc_str, get, write_expected

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 20261122
DATES = ["2026-11-18", "2026-11-19"]

# Telesign's documentation credentials, quoted by seed 000 (not a secret).
CUSTOMER_ID = "test_cust_id"
API_KEY = "test_api_key"


def key_of(pipeline, fields, obj):
    """The record key of docs/record-keys.md."""
    data = b"sluice-key-v1\x00" + enc_str(pipeline)
    for path in fields:
        data += enc_str(path) + enc(get(obj, path))
    return hashlib.sha256(data).hexdigest()[:32]


def ts(day, seconds, micros=0):
    t = datetime.datetime.fromisoformat(day).replace(tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{micros:06d}Z"


def norm_ts(text):
    """TIMESTAMP as sluice writes it: UTC, microseconds."""
    d = datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write(rel, data, compress=False):
    path = os.path.join(ROOT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if compress:
        data = gzip.compress(data, mtime=0)
    with open(path, "wb") as f:
        f.write(data)


def clear(rel):
    path = os.path.join(ROOT, rel)
    if os.path.isdir(path):
        for name in os.listdir(path):
            os.remove(os.path.join(path, name))


# --- seed 000: Telesign SMS delivery callbacks ----------------------------------------

# Telesign's SMS status codes (their documentation) and what each means for delivery.
STATUS_CODES = [
    ("200", "Delivered to handset", "delivered"),
    ("203", "Delivered to gateway", "delivered"),
    ("207", "Error delivering SMS to handset (reason unknown)", "failed"),
    ("210", "Temporary phone error", "failed"),
    ("211", "Permanent phone error", "failed"),
    ("220", "Handset error", "failed"),
    ("221", "Carrier error", "failed"),
    ("222", "Carrier error - system", "failed"),
    ("229", "Message expired before delivery", "failed"),
    ("230", "Error in routing", "failed"),
    ("231", "Cancelled", "failed"),
    ("237", "Message blocked", "failed"),
    ("250", "Final status unknown", "unknown"),
    ("290", "Message in progress", "pending"),
    ("295", "Message sent to the carrier", "pending"),
]
OUTCOME = {c: o for c, _, o in STATUS_CODES}
DESCRIPTION = {c: d for c, d, _ in STATUS_CODES}
COUNTRIES = [("TR", 90), ("RU", 7), ("GB", 44), ("DE", 49), ("BR", 55), ("US", 1), ("KZ", 7), ("IN", 91)]
SMS_PIPELINE = "sms_delivery_failures"
SMS_KEY = ["body.reference_id", "body.status.code", "body.status.updated_on"]
SMS_COLUMNS = ["received_at", "reference_id", "status_code", "status_description", "status_updated_on", "outcome",
               "country", "international_dial_code", "risk_score", "user_id", "signed_by", "record_key"]


def lenient_b64decode(text):
    """RFC 2045 reading, as Telesign's SDKs decode the API key: skip characters outside
    the alphabet, allow missing padding."""
    alphabet = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    kept = bytes(c for c in text.encode().split(b"=")[0] if c in alphabet)
    kept = kept[: len(kept) - (len(kept) % 4 == 1)]
    return binascii.a2b_base64(kept + b"=" * (-len(kept) % 4))


def tsa(body, customer=CUSTOMER_ID, key=API_KEY):
    mac = hmac.new(lenient_b64decode(key), body, hashlib.sha256).digest()
    return f"TSA {customer}:" + base64.b64encode(mac).decode()


def validations(rng):
    """Rows of user_phone_number_validations: reference id -> row."""
    rows = []
    for i in range(120):
        country, dial = rng.choice(COUNTRIES)
        created = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(minutes=rng.randrange(25000))
        rows.append({
            "user_id": 1000 + i,
            "validated_at": None if rng.random() < 0.3 else (created + datetime.timedelta(minutes=3)).strftime("%Y-%m-%d %H:%M:%S.%f"),
            "created_at": created.strftime("%Y-%m-%d %H:%M:%S.%f"),
            "updated_at": created.strftime("%Y-%m-%d %H:%M:%S.%f"),
            "international_dial_code": dial,
            "risk_score": rng.randrange(0, 1000),
            "country": None if i == 7 else country,
            "phone_number": str(rng.randrange(10**9, 10**10)),
            "telesign_reference_xid": "%032X" % rng.getrandbits(128),
        })
    return rows


def pg_text(v):
    if v is None:
        return "\\N"
    return str(v).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def write_dump(rows):
    cols = ["user_id", "validated_at", "created_at", "updated_at", "international_dial_code", "risk_score", "country",
            "phone_number", "telesign_reference_xid"]
    lines = [
        "--", "-- PostgreSQL database dump", "--", "",
        "SET statement_timeout = 0;", "SET client_encoding = 'UTF8';", "SET standard_conforming_strings = on;", "",
        "CREATE TABLE public.users (", "    id bigint NOT NULL,", "    username character varying", ");", "",
        "COPY public.users (id, username) FROM stdin;",
        "1000\tayse", "1001\tivan\\twith a tab", "\\.", "",
        "CREATE TABLE public.user_phone_number_validations (",
        "    user_id bigint NOT NULL,", "    validated_at timestamp with time zone,",
        "    created_at timestamp with time zone NOT NULL,", "    updated_at timestamp with time zone NOT NULL,",
        "    international_dial_code integer NOT NULL,", "    risk_score smallint DEFAULT 0 NOT NULL,",
        "    country text NOT NULL,", "    phone_number text NOT NULL,", "    telesign_reference_xid text", ");", "",
        f"COPY public.user_phone_number_validations ({', '.join(cols)}) FROM stdin;",
    ]
    for r in rows:
        lines.append("\t".join(pg_text(r[c]) for c in cols))
    lines += ["\\.", "", "--", "-- PostgreSQL database dump complete", "--", ""]
    write("Samples/dumps/user_phone_number_validations.sql", "\n".join(lines).encode())


def callback_body(rng, ref, code, updated_on, style):
    status = {"updated_on": updated_on, "code": code, "description": DESCRIPTION.get(code, "Unlisted status")}
    if style == 0:  # the seed's own shape and spacing
        return ("{ \"status\": { \"updated_on\": \"%s\", \"code\": \"%s\", \"description\": \"%s\" }, \"errors\": {}, "
                "\"reference_id\": \"%s\" }" % (updated_on, code, status["description"], ref)).encode()
    doc = {"reference_id": ref, "sub_resource": "sms", "errors": [], "status": status,
           "submit_timestamp": updated_on}
    return json.dumps(doc, separators=(",", ":") if style == 1 else (", ", ": ")).encode()


def raw_request(body, headers, line_end=b"\r\n", chunked=False):
    head = [b"POST /-/phone_verification/telesign_callback HTTP/1.1", b"Host: api.example.com", b"User-Agent: TeleSign"]
    for name, value in headers:
        head.append(f"{name}: {value}".encode())
    if chunked:
        head.append(b"Transfer-Encoding: chunked")
        half = len(body) // 2
        payload = b""
        for part in (body[:half], body[half:]):
            payload += b"%x" % len(part) + line_end + part + line_end
        payload += b"0" + line_end + line_end
    else:
        head.append(f"Content-Length: {len(body)}".encode())
        payload = body
    return line_end.join(head) + line_end + line_end + payload


def sms(rng):
    clear_dirs = [f"Samples/callbacks/telesign/{d}" for d in DATES]
    for d in clear_dirs:
        clear(d)
    rows_db = validations(rng)
    write_dump(rows_db)
    by_ref = {r["telesign_reference_xid"]: r for r in rows_db}
    refs = list(by_ref)
    with open(os.path.join(ROOT, "Samples/reference/telesign_sms_status_codes.csv"), "w", encoding="utf-8", newline="") as f:
        f.write(csv_line(["code", "description", "outcome"]))
        for c in STATUS_CODES:
            f.write(csv_line(c))
    codes = ["200"] * 10 + ["203"] * 2 + ["207", "210", "211", "220", "221", "222", "229", "230", "231", "237", "250", "290", "295"]
    rows_by_day, dead, summary = {}, [], []
    for day in DATES:
        base = f"Samples/callbacks/telesign/{day}"
        archives = {"archive-1.jsonl": [], "archive-2.jsonl.gz": []}
        raw_files = []
        events = []  # (file, line, request-model) in sluice's reading order
        for i in range(64):
            seconds = 300 + i * 1200 + rng.randrange(600)
            ref = rng.choice(refs) if i != 5 else "%032X" % rng.getrandbits(128)  # one unknown to the dump
            code = rng.choice(codes) if i != 9 else "299"  # one code not in the status table
            updated = ts(day, seconds - rng.randrange(1, 30), rng.randrange(1_000_000))
            received = ts(day, seconds, rng.randrange(1_000_000))
            body = callback_body(rng, ref, code, updated, i % 3)
            auth = tsa(body)
            problem = None
            if i == 11:
                auth = tsa(body.replace(b'"' + code.encode() + b'"', b'"200"', 1)) if code != "200" else tsa(body + b" ")
                problem = "bad_signature"  # forged: signed another body
            elif i == 17:
                auth = None
                problem = "bad_signature"  # unsigned
            elif i == 23:
                auth = tsa(body, customer="other_cust_id")
                problem = "bad_signature"
            elif i == 29:
                auth = tsa(body, key="c29tZW9uZSBlbHNl")
                problem = "bad_signature"  # another key
            elif i == 31:
                body = body[: len(body) // 2]  # cut by the proxy, signed as received
                auth = tsa(body)
                problem = "bad_request"
            headers = [("Content-Type", "application/json")]
            if auth:
                headers.append(("Authorization", auth))
            request = {"body": body, "problem": problem, "received": received,
                       "doc": None if problem else json.loads(body)}
            if i % 8 == 3:
                raw_files.append((f"raw-{i:04d}.http", request, headers, i))
            else:
                name = "archive-1.jsonl" if i % 3 else "archive-2.jsonl.gz"
                line = {"received_at": received, "method": "POST",
                        "path": "/-/phone_verification/telesign_callback",
                        "headers": dict(headers) if i % 2 else [[k, v] for k, v in headers],
                        "body": body.decode()}
                archives[name].append((json.dumps(line, ensure_ascii=False).encode(), request))
                if i == 14:  # Telesign retried this callback: the same request again
                    archives[name].append((json.dumps(dict(line, received_at=ts(day, seconds + 60))).encode(), request))
        # A line that is not JSON (an archive cut while written, then appended to).
        archives["archive-1.jsonl"].insert(5, (b'{"received_at": "' + day.encode() + b'T01:00:00Z", "method": "PO', {"problem": "malformed_json"}))
        for name in sorted(archives):
            write(f"{base}/{name}", b"".join(l + b"\n" for l, _ in archives[name]), compress=name.endswith(".gz"))
            for n, (_, req) in enumerate(archives[name], start=1):
                events.append((f"{base}/{name}", n, req))
        for name, req, headers, i in raw_files:
            style = (i // 8) % 4
            if style == 1:  # received time from Date, not X-Received-At
                t = datetime.datetime.fromisoformat(req["received"].replace("Z", "+00:00")).replace(microsecond=0)
                req["received"] = t.strftime("%Y-%m-%dT%H:%M:%SZ")
                hs = headers + [("Date", t.strftime("%a, %d %b %Y %H:%M:%S GMT"))]
            else:
                hs = headers + [("X-Received-At", req["received"])]
            data = raw_request(req["body"], hs, line_end=b"\n" if style == 3 else b"\r\n", chunked=(i % 16 == 11))
            write(f"{base}/{name}", data)
        for name, req, _, _ in raw_files:
            events.append((f"{base}/{name}", 1, req))
        rows, keys, read, loaded = [], set(), 0, 0
        for file, line, req in events:
            read += 1
            if req["problem"]:
                dead.append((day, file, line, req["problem"]))
                continue
            loaded += 1
            doc = {"body": req["doc"]}
            key = key_of(SMS_PIPELINE, SMS_KEY, doc)
            if key in keys:
                continue
            keys.add(key)
            ref = req["doc"]["reference_id"]
            v = by_ref.get(ref)
            st = req["doc"]["status"]
            rows.append({"received_at": norm_ts(req["received"]), "reference_id": ref, "status_code": int(st["code"]),
                         "status_description": st["description"], "status_updated_on": norm_ts(st["updated_on"]),
                         "outcome": OUTCOME.get(st["code"]), "country": v and v["country"],
                         "international_dial_code": v and v["international_dial_code"], "risk_score": v and v["risk_score"],
                         "user_id": v and v["user_id"], "signed_by": CUSTOMER_ID, "record_key": key})
        rows_by_day[day] = rows
        summary.append((day, read, loaded, 0, read - loaded))
    write_expected(SMS_PIPELINE, SMS_COLUMNS, rows_by_day, dead, summary)


# --- seed 002: identity-proofing events, PII redacted ---------------------------------

IDP_PIPELINE = "identity_proofing_events"
# The seed's pii_like_keypaths, under the event's properties.event_properties.
PII_PATHS = [["errors", "ssn"],
             ["resolution_result", "context", "stages", "resolution", "errors", "ssn"],
             ["resolution_result", "context", "stages", "residential_address", "errors", "ssn"],
             ["resolution_result", "context", "stages", "threatmetrix", "response_body", "first_name"],
             ["resolution_result", "context", "stages", "state_id", "state_id_jurisdiction"]]
IDP_COLUMNS = ["time", "event_id", "name", "user_id", "visitor_id", "visit_id", "locale", "new_event", "path",
               "session_duration", "resolution_success", "threatmetrix_review_status", "socure_success",
               "socure_reason_codes", "socure_verified_attributes", "event_properties", "record_key"]


def stage(success, vendor, transaction, extra=None):
    s = {"success": success, "errors": {}, "exception": None, "timed_out": False, "transaction_id": transaction,
         "reference": "", "can_pass_with_additional_verification": False,
         "attributes_requiring_additional_verification": [], "vendor_name": vendor, "vendor_workflow": None,
         "verified_attributes": None}
    s.update(extra or {})
    return s


def proofing_event(rng, day, seconds, name):
    ok = rng.random() < 0.75
    resolution = stage(ok, "ResolutionMock", "resolution-mock-transaction-id-%d" % rng.randrange(1000), {"reference": "aaa-bbb-ccc"})
    if not ok:
        resolution["errors"] = {"ssn": ["Unverified SSN %03d-%02d-%04d" % (rng.randrange(900), rng.randrange(100), rng.randrange(10000))]}
    residential = stage(True, "ResidentialAddressNotRequired", "")
    if rng.random() < 0.2:
        residential["errors"] = {"ssn": ["%09d" % rng.randrange(10**9)], "zipcode": ["Unverified ZIP code"]}
    state_id = {"success": True, "errors": {}, "exception": None, "mva_exception": None, "requested_attributes": {},
                "timed_out": False, "transaction_id": "state-id-mock-transaction-id-456", "vendor_name": "StateIdMock",
                "verified_attributes": [], "state_id_jurisdiction": rng.choice(["ND", "MD", "VA", "NY"])}
    threatmetrix = {"client": None, "success": True, "errors": {}, "exception": None, "timed_out": False,
                    "transaction_id": "ddp-mock-transaction-id-123", "review_status": rng.choice(["pass", "pass", "review", "reject"])}
    if rng.random() < 0.5:
        threatmetrix["response_body"] = {"first_name": rng.choice(["FAKEY", "Ayşe", "Иван"]), "review_status": threatmetrix["review_status"]}
    props = {"resolution_result": {
        "success": ok, "errors": {}, "exception": None, "timed_out": False,
        "threatmetrix_review_status": threatmetrix["review_status"],
        "context": {"device_profiling_adjudication_reason": "device_profiling_result_pass",
                    "resolution_adjudication_reason": "pass_resolution_and_state_id" if ok else "fail_resolution_skip_state_id",
                    "should_proof_state_id": ok,
                    "stages": {"resolution": resolution, "residential_address": residential, "state_id": state_id,
                               "threatmetrix": threatmetrix}},
        "ssn_is_unique": True}}
    if rng.random() < 0.15:
        props["errors"] = {"ssn": ["SSN %03d-%02d-%04d is already in use" % (rng.randrange(900), rng.randrange(100), rng.randrange(10000))]}
    if name == "idv_socure_shadow_mode_proofing_result":
        socure_ok = rng.random() < 0.8
        props["socure_result"] = {
            "success": socure_ok, "errors": {"reason_codes": rng.sample(["I919", "I905", "R186", "I614", "R207"], rng.randrange(1, 3))},
            "exception": None, "timed_out": False, "transaction_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "reference": "", "can_pass_with_additional_verification": False,
            "attributes_requiring_additional_verification": [], "vendor_name": "socure_kyc", "vendor_workflow": None,
            "verified_attributes": ["address", "first_name", "last_name", "ssn", "dob"] if socure_ok else ["address"]}
    return {"name": name,
            "properties": {"event_properties": props, "new_event": rng.random() < 0.9, "path": None,
                           "session_duration": rng.choice([None, 12.5, 301.25, 0.75]),
                           "user_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "locale": rng.choice(["en", "es", "fr"])},
            "time": ts(day, seconds, rng.randrange(1000) * 1000).replace("000Z", "Z"),
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "visitor_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "visit_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "log_filename": "events.log"}


def redacted(props):
    props = json.loads(json.dumps(props))
    for path in PII_PATHS:
        cur = props
        for part in path[:-1]:
            cur = cur.get(part) if isinstance(cur, dict) else None
        if isinstance(cur, dict):
            cur.pop(path[-1], None)
    return props


def idp(rng):
    rows_by_day, dead, summary = {}, [], []
    for day in DATES:
        rel = f"Samples/logs/idp/{day}/events.log"
        lines, models = [], []
        for i in range(40):
            name = rng.choice(["idv_socure_shadow_mode_proofing_result", "IdV: doc auth verify proofing results"])
            if i % 9 == 4:
                e = {"name": "Email and Password Authentication", "properties": {"event_properties": {"success": True},
                     "new_event": False, "path": "/", "session_duration": 3.5, "user_id": "anonymous", "locale": "en"},
                     "time": ts(day, 600 + i * 2000), "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                     "visitor_id": None, "visit_id": None, "log_filename": "events.log"}
            else:
                e = proofing_event(rng, day, 600 + i * 2000, name)
            lines.append(json.dumps(e, indent=None, ensure_ascii=False).encode())
            models.append(e)
        lines.insert(13, lines[12][: len(lines[12]) // 3])  # a cut line
        models.insert(13, "malformed_json")
        bad = dict(models[20])
        bad.pop("time")
        bad["id"] = "no-time-" + day
        lines.insert(21, json.dumps(bad).encode())
        models.insert(21, "bad_time")
        write(rel, b"".join(l + b"\n" for l in lines))
        rows, read, loaded = [], 0, 0
        for n, m in enumerate(models, start=1):
            read += 1
            if isinstance(m, str):
                dead.append((day, rel, n, m))
                continue
            loaded += 1
            p = m["properties"]
            ep = p["event_properties"]
            rr = ep.get("resolution_result") or {}
            sr = ep.get("socure_result") or {}
            rows.append({"time": norm_ts(m["time"]), "event_id": m["id"], "name": m["name"], "user_id": p["user_id"],
                         "visitor_id": m["visitor_id"], "visit_id": m["visit_id"], "locale": p["locale"],
                         "new_event": p["new_event"], "path": p["path"],
                         "session_duration": None if p["session_duration"] is None else repr(p["session_duration"]),
                         "resolution_success": rr.get("success"),
                         "threatmetrix_review_status": rr.get("threatmetrix_review_status"),
                         "socure_success": sr.get("success"),
                         "socure_reason_codes": json.dumps((sr.get("errors") or {}).get("reason_codes") or [], separators=(",", ":")),
                         "socure_verified_attributes": json.dumps(sr.get("verified_attributes") or [], separators=(",", ":")),
                         "event_properties": json.dumps(redacted(ep), ensure_ascii=False, separators=(",", ":")),
                         "record_key": key_of(IDP_PIPELINE, ["id"], m)})
        rows_by_day[day] = rows
        summary.append((day, read, loaded, 0, read - loaded))
    write_expected(IDP_PIPELINE, IDP_COLUMNS, rows_by_day, dead, summary)


# --- seed 004: Arkose truth data from the application log -----------------------------

ARKOSE_PIPELINE = "arkose_truth_data"
ARKOSE_KEY = ["correlation_id", "arkose_session"]
ARKOSE_COLUMNS = ["time", "severity", "status", "username", "arkose_session", "arkose_risk_band", "is_legit", "message",
                  "error_message", "correlation_id", "record_key"]


def arkose(rng):
    rows_by_day, dead, summary = {}, [], []
    for day in DATES:
        rel = f"Samples/logs/app/{day}/application_json.log"
        lines, models = [], []
        for i in range(90):
            t = ts(day, 120 + i * 900, rng.randrange(1000) * 1000)[:-4] + "Z"  # milliseconds, as Rails logs them
            corr = "01J" + "".join(rng.choice("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for _ in range(23))
            if i % 4 == 1:
                failed = rng.random() < 0.15
                e = {"severity": "ERROR" if failed else "INFO", "time": t, "correlation_id": corr,
                     "meta.caller_id": "Users::AutoBanService", "meta.feature_category": "instance_resiliency",
                     "message": "sent arkose truth data" if not failed else "failed to send arkose truth data",
                     "event": "Arkose truth data", "status": "failure" if failed else "success",
                     "username": rng.choice(["new100", "spammer_42", "user.ğüşiöç", "bot-7"]) + str(i),
                     "arkose_session": "%017x.%010d" % (rng.getrandbits(68), rng.randrange(10**10)),
                     "arkose_risk_band": rng.choice(["Low", "Medium", "High"]), "is_legit": rng.random() < 0.2}
                if failed:
                    e["error_message"] = rng.choice(["Net::ReadTimeout", "HTTP 503 from Arkose"])
            else:
                e = {"severity": "INFO", "time": t, "correlation_id": corr,
                     "message": rng.choice(["Successful Login: username=u%d ip=10.0.0.%d method=standard admin=false" % (i, i),
                                            "Sidekiq job completed", "Rack attack throttle", "Tracking user signup"]),
                     "meta.caller_id": rng.choice(["SessionsController#create", "RegistrationsController#create"])}
                if i % 10 == 0:
                    e["event"] = "user_signup"  # another event: filtered
            lines.append(json.dumps(e, ensure_ascii=False).encode())
            models.append(e)
        lines.insert(30, b'{"severity":"INFO","time":"' + day.encode() + b'T07:30:00.000Z","message":"trunc')
        models.insert(30, "malformed_json")
        write(rel, b"".join(l + b"\n" for l in lines))
        rows, read, loaded, filtered = [], 0, 0, 0
        for n, m in enumerate(models, start=1):
            read += 1
            if isinstance(m, str):
                dead.append((day, rel, n, m))
                continue
            if m.get("event") != "Arkose truth data":
                filtered += 1
                continue
            loaded += 1
            row = {c: m.get(c) for c in ARKOSE_COLUMNS if c not in ("time", "record_key")}
            row["time"] = norm_ts(m["time"])
            row["record_key"] = key_of(ARKOSE_PIPELINE, ARKOSE_KEY, m)
            rows.append(row)
        rows_by_day[day] = rows
        summary.append((day, read, loaded, filtered, read - loaded - filtered))
    write_expected(ARKOSE_PIPELINE, ARKOSE_COLUMNS, rows_by_day, dead, summary)


def main():
    rng = random.Random(SEED)
    os.makedirs(os.path.join(ROOT, "Samples/reference"), exist_ok=True)
    sms(rng)
    idp(rng)
    arkose(rng)


if __name__ == "__main__":
    main()
