#!/usr/bin/env python3
"""Reference answers from MaxMind's own reader, the PyPI package `maxminddb`, in its
pure-Python mode (MODE_MMAP), for the SluiceMaxMind tests.

    reference_lookup.py lookup DB [PATHS] [FULL_EVERY] < ips   one JSON line per address:
        {"prefix": n, "record": ...} or {"prefix": n, "record": null} (no data), or
        {"prefix": n, "values": [...], "record": ... (every FULL_EVERY-th)} with PATHS
        (comma-separated dotted paths), or {"error": "..."}
    reference_lookup.py metadata DB                          the metadata as JSON
    reference_lookup.py networks DB                          [[first, last], ...] (best effort)
    reference_lookup.py parse < texts                        ipaddress's reading of each line:
        32 or 128 hex digits, or "invalid"

Values keep their map order. Integers beyond +-2**53 are {"$int": "decimal"}, bytes are
{"$bytes": "hex"}, non-finite floats {"$float": "nan" | "inf" | "-inf"}."""
import ipaddress
import json
import sys

try:
    import maxminddb
except ImportError:
    sys.stderr.write("the Python package maxminddb is not installed (pip install maxminddb)\n")
    sys.exit(3)


def plain(v):
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return v if -(2**53) < v < 2**53 else {"$int": str(v)}
    if isinstance(v, float):
        if v != v:
            return {"$float": "nan"}
        if v in (float("inf"), float("-inf")):
            return {"$float": "inf" if v > 0 else "-inf"}
        return v
    if isinstance(v, (bytes, bytearray)):
        return {"$bytes": bytes(v).hex()}
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    raise TypeError(type(v))


def at(record, path):
    v = record
    for part in path:
        if isinstance(v, dict):
            if part not in v:
                return None
            v = v[part]
        elif isinstance(v, list):
            i = int(part)
            if not -len(v) <= i < len(v):
                return None
            v = v[i]
        else:
            return None
    return v


def main():
    cmd = sys.argv[1]
    if cmd == "parse":
        for line in sys.stdin:
            text = line.rstrip("\n")
            try:
                a = ipaddress.ip_address(text)
                print(a.packed.hex() if "%" not in text else "invalid")
            except ValueError:
                print("invalid")
        return
    reader = maxminddb.open_database(sys.argv[2], maxminddb.MODE_MMAP)
    if cmd == "metadata":
        m = reader.metadata()
        print(json.dumps({"node_count": m.node_count, "record_size": m.record_size,
                          "ip_version": m.ip_version, "database_type": m.database_type,
                          "languages": m.languages, "build_epoch": plain(m.build_epoch),
                          "binary_format_major_version": m.binary_format_major_version,
                          "binary_format_minor_version": m.binary_format_minor_version,
                          "description": m.description}, ensure_ascii=False))
    elif cmd == "networks":
        out = []
        try:
            for network, _ in reader:
                out.append([str(network.network_address), str(network.broadcast_address)])
        except Exception:  # the iterator fails on some aliased trees: keep what it gave
            pass
        print(json.dumps(out))
    elif cmd == "lookup":
        paths = [p.split(".") for p in sys.argv[3].split(",")] if len(sys.argv) > 3 and sys.argv[3] else None
        full_every = int(sys.argv[4]) if len(sys.argv) > 4 else 1
        out = sys.stdout
        for n, line in enumerate(sys.stdin):
            ip = line.strip()
            try:
                record, prefix = reader.get_with_prefix_len(ip)
            except Exception as e:
                out.write(json.dumps({"error": f"{type(e).__name__}: {e}"}) + "\n")
                continue
            result = {"prefix": prefix}
            if paths is not None:
                result["values"] = [plain(at(record, p)) if record is not None else None for p in paths]
                if n % full_every == 0:
                    result["record"] = plain(record)
            else:
                result["record"] = plain(record)
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
    else:
        sys.exit(f"unknown command {cmd}")


main()
