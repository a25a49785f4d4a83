#!/usr/bin/env python3
"""Widens the benchmark's IP-to-ASN table to the size of a real one, deterministically.

    python3 bench/asn_table.py --base /work/bench-data/ip2asn.tsv --ranges 500000 \
        --out /work/bench-data/ip2asn-500000.tsv

`bench/generate.py` writes one range per network the log's addresses come from (~22,000),
with 15 descriptions. iptoasn.com's `ip2asn-combined.tsv` has ~500,000 ranges of ~75,000
autonomous systems, and the `asn` stage holds the whole table for a run. This keeps every
range of the base table (so every address of the log finds the same row) and fills the
IPv4 space between them (1.0.0.0 to 223.255.255.255) with more ranges, a tenth of them
not routed (AS 0), and a tenth of `--ranges` as IPv6 ranges in 2001:db8::/32 (the
documentation prefix, which the City database does not hold), rows drawn from `--systems`
distinct (AS number, country, description). Sorted by start, as iptoasn.com's files are.
"""
import argparse
import ipaddress
import os
import random

from generate import AS_NAMES

COUNTRIES = ["TR", "RU", "US", "DE", "GB", "JP", "BR", "KZ", "UA", "FR", "NL", "IN", "CN", "None"]


def read_base(path):
    """The base table's lines, IPv4 ones as (start, end, line) and the IPv6 ones as text."""
    v4, v6 = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            start, end, _ = line.split("\t", 2)
            if ":" in start:
                v6.append(line)
            else:
                v4.append((int(ipaddress.IPv4Address(start)), int(ipaddress.IPv4Address(end)), line))
    v4.sort()
    return v4, v6


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the table bench/generate.py wrote (--asn-out)")
    ap.add_argument("--ranges", type=int, default=500_000)
    ap.add_argument("--systems", type=int, default=75_000, help="distinct (AS number, country, description) rows")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    systems = [(rng.randint(1000, 400000), rng.choice(COUNTRIES),
                AS_NAMES[k % len(AS_NAMES)] + ("" if k % 3 == 0 else f" {k}")) for k in range(a.systems)]

    def row():
        if rng.random() < 0.1:
            return "0\tNone\tNot routed"
        number, country, name = rng.choice(systems)
        return f"{number}\t{country}\t{name}"

    base4, base6 = read_base(a.base)
    v6_wanted = a.ranges // 10
    v4_wanted = max(0, a.ranges - v6_wanted - len(base4) - len(base6))
    # The gaps between the base's IPv4 ranges, each given ranges in proportion to its size.
    gaps, at = [], int(ipaddress.IPv4Address("1.0.0.0"))
    last = int(ipaddress.IPv4Address("223.255.255.255"))
    for start, end, _ in base4:
        if start > at:
            gaps.append((at, start - 1))
        at = max(at, end + 1)
    if at <= last:
        gaps.append((at, last))
    total = sum(e - s + 1 for s, e in gaps)
    lines, owed = [(start, line) for start, _, line in base4], 0.0
    for s, e in gaps:
        owed += (e - s + 1) * v4_wanted / total
        n = min(int(owed), e - s + 1)
        owed -= n
        for i in range(n):
            lo = s + (e - s + 1) * i // n
            hi = s + (e - s + 1) * (i + 1) // n - 1
            lines.append((lo, f"{ipaddress.IPv4Address(lo)}\t{ipaddress.IPv4Address(hi)}\t{row()}\n"))
    lines.sort(key=lambda x: x[0])
    prefix = int(ipaddress.IPv6Address("2001:db8::"))
    v6 = [(int(ipaddress.IPv6Address(line.split("\t", 1)[0])), line) for line in base6]
    for i in range(v6_wanted):
        lo = prefix + (i << 80)
        v6.append((lo, f"{ipaddress.IPv6Address(lo)}\t{ipaddress.IPv6Address(lo + (1 << 80) - 1)}\t{row()}\n"))
    v6.sort(key=lambda x: x[0])
    tmp = a.out + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.writelines(line for _, line in lines)
        f.writelines(line for _, line in v6)
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
