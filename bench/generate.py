#!/usr/bin/env python3
"""Writes, deterministically, a JSON Lines API request log for the throughput benchmark.

    python3 bench/generate.py --lines 1000000 --out /work/bench-data/api-1000000.jsonl \
        --city ../shared/data/geolite2-city-2019/GeoLite2-City.mmdb

The lines have the shape of seed 001 (the `signup_attempts` pipeline's input, like
Samples/logs/api): request id, method, host, path, query, action, IP, headers (user
agent, referer, Cloudflare country, fingerprint), body (email, country, currency, phone,
affiliate data, extra), response (status, localized error text), duration. All lines
fall on one day (2026-11-18, or `--day N` days later: another day of the same product,
with other request ids, for a backfill of several days), in time order with a little
disorder.

- IPs: addresses inside networks of the full GeoLite2 City database, found by looking
  up random addresses with MaxMind's own reader (`maxminddb`); IPv4 and some IPv6.
- User agents: real browser, app and bot strings.
- Error texts: the product catalog's messages (Samples/i18n, en/tr/ru, with plural
  forms) and a share of texts in other languages (de, es, pt, uk) the catalog lacks.
- Fingerprints: a long tail plus a few hot ones (over the rate limit).

Same arguments, same bytes (a fixed seed; no clock, no hash randomness).
"""
import argparse
import datetime
import ipaddress
import json
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Samples"))
from generate_signup_samples import CATALOG, ERRORS_BY_ACTION, HOSTS, PATHS, COUNTRIES, DOMAINS, NAMES, message  # noqa: E402

USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/130.0.6723.90 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.6668.100 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0",
    "Mozilla/5.0 (Linux; Android 12; Redmi Note 11) AppleWebKit/537.36 (KHTML, like Gecko) YaBrowser/24.4 Яндекс Браузер Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 16_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "okhttp/4.12.0",
    "Dalvik/2.1.0 (Linux; U; Android 11; M2010J19SG Build/RKQ1.201004.002)",
    "MyBrand/3.4.1 (Android 13; \"Pixel 7\"; ru-RU)",
    "MyBrand/3.4.0 (iOS 17.5; iPhone15,2; tr-TR) CFNetwork/1496.0.7 Darwin/23.5.0",
    "python-requests/2.32.3",
    "curl/8.5.0",
]
REFERERS = [None, None, "https://google.com/", "https://example.com/landing", "https://example.com/promo?utm=tg",
            "android-app://com.example", "https://www.bing.com/search?q=example+casino", "https://yandex.ru/"]
# Texts in languages the product's catalog does not have (they get no error code).
FOREIGN_ERRORS = ["E-Mail-Adresse ist bereits vergeben", "La dirección de correo ya está en uso",
                  "Senha muito curta (mínimo de 8 caracteres)", "Забагато спроб. Спробуйте пізніше",
                  "Die Anfrage wurde gedrosselt.", "Demasiados intentos: el límite es 5 por hora"]
DAY = 1795046400  # an origin for times of day: only differences from it are written


def find_networks(city_path, rng, v4_count, v6_count):
    """Networks (ipaddress objects) of the City database with a country, found by
    looking up random addresses."""
    import maxminddb
    nets = []
    seen = set()
    with maxminddb.open_database(city_path) as db:
        tries = 0
        while len(nets) < v4_count and tries < 50 * v4_count:
            tries += 1
            ip = ipaddress.IPv4Address(rng.getrandbits(32))
            rec, plen = db.get_with_prefix_len(str(ip))
            if rec and "country" in rec:
                net = ipaddress.ip_network(f"{ip}/{plen}", strict=False)
                if net not in seen:
                    seen.add(net)
                    nets.append(net)
        tries = 0
        v6 = []
        while len(v6) < v6_count and tries < 200 * v6_count:
            tries += 1
            # Allocated global unicast space: 2001::/16 .. 2a0f::/16, a random /32 in it.
            top = rng.choice([0x2001, 0x2400, 0x2600, 0x2604, 0x2607, 0x2800, 0x2a00, 0x2a01, 0x2a02, 0x2a03, 0x2a0e])
            ip = ipaddress.IPv6Address((top << 112) | (rng.getrandbits(16) << 96) | rng.getrandbits(96))
            rec, plen = db.get_with_prefix_len(str(ip))
            if rec and "country" in rec:
                net = ipaddress.ip_network(f"{ip}/{plen}", strict=False)
                if net not in seen:
                    seen.add(net)
                    v6.append(net)
    return nets, v6


AS_NAMES = ["TTNET Türk Telekomünikasyon", "YANDEX LLC", "FACEBOOK", "GOOGLE", "AMAZON-02", "CHINA UNICOM China169 Backbone",
            "Kar-Tel LLC, \"Beeline\" Kazakhstan", "Deutsche Telekom AG", "Telefonica de Espana", "NTT-COMMUNICATIONS-2914",
            "Rostelecom", "COMCAST-7922", "Vodafone GmbH", "Orange S.A.", "TELEFÔNICA BRASIL S.A"]


def write_asn(path, v4, v6, rng):
    """One range per sampled network (they are disjoint), sorted; a tenth not routed (AS 0)."""
    rows = []
    for net in sorted(v4) + sorted(v6):
        routed = rng.random() >= 0.1
        number = rng.randint(1000, 400000) if routed else 0
        country = rng.choice(["TR", "RU", "US", "DE", "GB", "JP", "BR", "KZ", "None"]) if routed else "None"
        name = rng.choice(AS_NAMES) if routed else "Not routed"
        rows.append(f"{net.network_address}\t{net.broadcast_address}\t{number}\t{country}\t{name}\n")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.writelines(rows)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--city", required=True, help="GeoLite2-City.mmdb")
    ap.add_argument("--asn-out", help="also write an IP-to-ASN TSV (iptoasn.com shape) covering the sampled networks")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--day", type=int, default=0, help="days after 2026-11-18 (the same networks and fingerprints, other requests)")
    a = ap.parse_args()

    rng = random.Random(a.seed)
    v4, v6 = find_networks(a.city, rng, 20000, 2000)
    if a.asn_out:
        write_asn(a.asn_out, v4, v6, random.Random(a.seed + 1))
    fps = ["fp_%012x" % rng.getrandbits(48) for _ in range(max(100, a.lines // 8))]
    hot = fps[:40]
    if a.day:
        rng = random.Random(a.seed * 1_000_003 + a.day)  # the day's own requests (ids, times, bodies)
    start = DAY + a.day * 86400
    date = (datetime.date(2026, 11, 18) + datetime.timedelta(days=a.day)).isoformat()
    actions = list(PATHS)
    n = a.lines
    step = 86400 / n
    tmp = a.out + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        buf = []
        for i in range(n):
            r = rng.random
            t = start + i * step + (r() * 600 - 300 if r() < 0.02 else 0)  # 2% up to 5 minutes late/early
            t = min(max(t, start), start + 86399.999999)
            ts = "%sT%02d:%02d:%09.6fZ" % (date, int(t - start) // 3600, int(t - start) % 3600 // 60, (t - start) % 60)
            action = actions[int(r() * len(actions))]
            rid = "%08x-%04x-4%03x-%04x-%012x" % (rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(12),
                                                  0x8000 | rng.getrandbits(14), rng.getrandbits(48))
            if r() < 0.1:
                net = v6[int(r() * len(v6))]
            else:
                net = v4[int(r() * len(v4))]
            ip = str(net.network_address + int(r() * net.num_addresses))
            headers = {"user-agent": USER_AGENTS[int(r() * len(USER_AGENTS))]}
            ref = REFERERS[int(r() * len(REFERERS))]
            if ref:
                headers["referer"] = ref
            if r() < 0.3:
                headers["cf-ipcountry"] = COUNTRIES[int(r() * len(COUNTRIES))][0] if r() < 0.9 else "XX"
            if r() < 0.9:
                headers["x-fingerprint"] = hot[int(r() * len(hot))] if r() < 0.05 else fps[int(r() * len(fps))]
            country, currency, prefix, locale = COUNTRIES[int(r() * len(COUNTRIES))]
            body = {}
            if action != "deposit":
                body["email"] = "%s%d@%s" % (NAMES[int(r() * len(NAMES))], int(r() * 1000), DOMAINS[int(r() * len(DOMAINS))])
            if action in ("signup", "validate"):
                body.update({"country": country, "currency": currency, "phone": prefix + "%010d" % int(r() * 1e10)})
                if r() < 0.3:
                    body["affiliate_data"] = {"aff_id": str(int(r() * 1000)), "promo_id": "BONUS100", "click_id": "c-%08x" % rng.getrandbits(32)}
            if action == "deposit":
                body.update({"currency": currency, "amount": round(r() * 500, 2)})
            if r() < 0.5:
                body["extra"] = {"locale": locale, "marketing_opt_in": r() < 0.5}
            if r() < 0.25:
                if r() < 0.1:
                    text = FOREIGN_ERRORS[int(r() * len(FOREIGN_ERRORS))]
                    loc = "xx"
                else:
                    key = ERRORS_BY_ACTION[action][int(r() * len(ERRORS_BY_ACTION[action]))]
                    loc = ["en", "tr", "ru"][int(r() * 3)]
                    values = {}
                    if key in ("password_too_short", "rate_limited"):
                        values["count"] = int(r() * 30) + 1
                    if key == "deposit_too_small":
                        values["amount"] = "%d %s" % (int(r() * 100) + 1, currency)
                    text = message(key, loc, values)
                response = {"http_status": 422, "status": "error", "error": {"message": text, "locale": loc}}
            else:
                response = {"http_status": 200, "status": "success"}
                if action in ("signup", "login"):
                    response["user_id"] = int(r() * 10_000_000)
            obj = {"timestamp": ts, "request_id": rid, "method": "POST", "host": HOSTS[int(r() * len(HOSTS))],
                   "path": PATHS[action][int(r() * 2)]}
            if r() < 0.3:
                obj["query"] = "lang=%s&promo=P%d" % (locale, int(r() * 9))
            obj.update({"action": action, "ip": ip, "headers": headers, "body": body, "response": response,
                        "duration_ns": int(r() * 2e9)})
            buf.append(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
            if len(buf) >= 10000:
                f.write("\n".join(buf) + "\n")
                buf = []
        if buf:
            f.write("\n".join(buf) + "\n")
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
