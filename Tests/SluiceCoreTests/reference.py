#!/usr/bin/env python3
"""Independent reference for sluice's core: record keys (the documented canonical
encoding, written again from docs/record-keys.md), JSON text (Python's json module) and
timestamps (Python's datetime). Reads one JSON request per line on stdin, writes one
JSON answer per line."""
import datetime
import hashlib
import json
import struct
import sys


def enc_str(s):
    b = s.encode("utf-8")
    return b"s" + str(len(b)).encode() + b":" + b


def enc(v):
    if v is None:
        return b"n"
    if v is True:
        return b"t"
    if v is False:
        return b"f"
    if isinstance(v, int):
        return b"i" + str(v).encode() + b";"
    if isinstance(v, float):
        return b"d" + struct.pack(">d", v)
    if isinstance(v, str):
        return enc_str(v)
    if isinstance(v, list):
        return b"a" + str(len(v)).encode() + b":" + b"".join(enc(x) for x in v)
    if isinstance(v, dict):
        keys = sorted(v.keys(), key=lambda k: k.encode("utf-8"))
        return b"o" + str(len(v)).encode() + b":" + b"".join(enc_str(k) + enc(v[k]) for k in keys)
    raise TypeError(type(v))


def key(pipeline, fields):
    data = b"sluice-key-v1\x00" + enc_str(pipeline)
    for name, value in fields:
        data += enc_str(name) + enc(value)
    return hashlib.sha256(data).hexdigest()[:32]


def position_key(pipeline, file, offset):
    data = b"sluice-key-v1\x00" + enc_str(pipeline) + b"p" + enc_str(file) + enc(offset)
    return hashlib.sha256(data).hexdigest()[:32]


def timestamp(text):
    try:
        t = text.replace("z", "Z")
        if t.endswith(" UTC"):
            t = t[:-4]
        d = datetime.datetime.fromisoformat(t)
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=datetime.timezone.utc)
    delta = d - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


for line in sys.stdin:
    req = json.loads(line)
    op = req["op"]
    if op == "key":
        out = key(req["pipeline"], [(n, json.loads(v)) for n, v in req["fields"]])
    elif op == "position_key":
        out = position_key(req["pipeline"], req["file"], req["offset"])
    elif op == "dumps":
        # null when Python's json refuses the text (a control character in a string).
        try:
            out = json.dumps(json.loads(req["text"]), ensure_ascii=False, separators=(",", ":"))
        except ValueError:
            out = None
    elif op == "path":
        # The value at a dotted path (object keys by their code points, list indexes), or
        # {"missing": true}.
        v = json.loads(req["text"])
        for c in req["path"].split("."):
            if isinstance(v, dict) and c in v:
                v = v[c]
            elif isinstance(v, list) and c.isdigit() and int(c) < len(v):
                v = v[int(c)]
            else:
                v = None
                out = {"missing": True}
                break
        else:
            out = {"value": json.dumps(v, ensure_ascii=False, separators=(",", ":"))}
    elif op == "short_digest":
        # The first 16 bytes of SHA-256, as lowercase hex, of bytes given as hex.
        out = hashlib.sha256(bytes.fromhex(req["hex"])).hexdigest()[:32]
    elif op == "timestamp":
        out = timestamp(req["text"])
    elif op == "format_timestamp":
        # BigQuery's canonical TIMESTAMP text of epoch microseconds, by datetime.
        d = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=req["micros"])
        out = d.strftime("%Y-%m-%dT%H:%M:%S.%f").rjust(26, "0") + "Z"
    else:
        raise ValueError(op)
    print(json.dumps(out))
