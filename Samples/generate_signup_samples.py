#!/usr/bin/env python3
"""Writes the sample inputs of the `signup_attempts` pipeline and, independently of
sluice's code, the output sluice must produce from them.

    python3 Samples/generate_signup_samples.py     # from the repository root

Deterministic (fixed seed, gzip with mtime 0): running it again rewrites identical files.
It is a model of the pipeline written from its specification (docs/pipelines.md,
docs/types.md, docs/record-keys.md), not a copy of sluice's logic, so that `sluice test`
compares two independent implementations.

Writes:
  Samples/logs/api/<date>/api-*.jsonl[.gz]        API request logs, 3 days
  Samples/i18n/errors.{en,tr,ru}.yml               the product's error catalog (Rails i18n shape)
  Samples/geo/sample-city.mmdb                     a small City database (MaxMind DB format)
  Samples/geo/ip2asn.tsv                           IP-to-ASN ranges (range start, end, AS, country, name)
  Samples/expected/signup_attempts/<date>.csv     rows as the CSV sink writes them
  Samples/expected/signup_attempts/dead_letters.csv
  Samples/expected/signup_attempts/summary.csv
"""
import datetime
import gzip
import hashlib
import ipaddress
import json
import os
import random
import struct
import uuid
import zlib

from mmdb_writer import write_mmdb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 20261118
DATES = ["2026-11-18", "2026-11-19", "2026-11-20"]
PIPELINE = "signup_attempts"
MAX_LINE = 1048576

COLUMNS = ["timestamp", "user_agent", "ip", "geo", "as_country_code", "as_description", "as_number",
           "domain", "path", "query", "action", "fp", "referrer", "email", "country", "currency", "phone",
           "status", "aff_data", "additional_data", "resp", "duration", "error_code", "error_values",
           "fp_count_1h", "fp_over_limit", "email_domain_suggestion", "record_key"]

# What the generator wrote into each error message: text -> (catalog key, filled values).
# The expected error code of a line is looked up here, independently of sluice's matcher.
GENERATED_ERRORS = {}

# Providers the email_domain stage suggests (the stage's default list).
PROVIDERS = ["gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.co.jp", "hotmail.com", "hotmail.co.uk",
             "outlook.com", "live.com", "msn.com", "icloud.com", "me.com", "aol.com", "protonmail.com", "proton.me", "gmx.de",
             "gmx.net", "web.de", "mail.ru", "yandex.ru", "ya.ru", "bk.ru", "list.ru", "inbox.ru", "rambler.ru", "qq.com",
             "163.com", "naver.com"]
WINDOW = 3600 * 1_000_000
LIMIT = 30

# The product's error catalog: key -> {locale: text or plural forms}.
CATALOG = {
    "email_taken": {"en": "Email has already been taken", "tr": "E-posta zaten kullanılıyor",
                    "ru": "Этот адрес электронной почты уже занят"},
    "email_invalid": {"en": "Email is invalid", "tr": "E-posta geçersiz",
                      "ru": "Неверный адрес электронной почты"},
    "password_too_short": {
        "en": {"one": "Password is too short (minimum is %{count} character)",
               "other": "Password is too short (minimum is %{count} characters)"},
        "tr": {"one": "Şifre çok kısa (en az %{count} karakter)", "other": "Şifre çok kısa (en az %{count} karakter)"},
        "ru": {"one": "Пароль слишком короткий (минимум %{count} символ)",
               "few": "Пароль слишком короткий (минимум %{count} символа)",
               "many": "Пароль слишком короткий (минимум %{count} символов)",
               "other": "Пароль слишком короткий (минимум %{count} символа)"}},
    "rate_limited": {
        "en": {"one": "Too many attempts: limit is %{count} per hour", "other": "Too many attempts: limit is %{count} per hour"},
        "tr": {"one": "Çok fazla deneme. İzin verilen sınır saatte %{count} istek",
               "other": "Çok fazla deneme. İzin verilen sınır saatte %{count} istek"},
        "ru": {"one": "Слишком много попыток: не более %{count} в час",
               "few": "Слишком много попыток: не более %{count} в час",
               "many": "Слишком много попыток: не более %{count} в час",
               "other": "Слишком много попыток: не более %{count} в час"}},
    "phone_invalid": {"en": "Phone number is invalid", "tr": "Telefon numarası geçersiz",
                      "ru": "Неверный номер телефона"},
    "country_not_supported": {"en": "Country is not supported", "tr": "Bu ülke desteklenmiyor",
                              "ru": "Страна не поддерживается"},
    "currency_not_supported": {"en": "Currency is not supported", "tr": "Para birimi desteklenmiyor",
                               "ru": "Валюта не поддерживается"},
    "deposit_too_small": {"en": "Deposit amount is too small (minimum %{amount})",
                          "tr": "Yatırım tutarı çok düşük (en az %{amount})",
                          "ru": "Сумма депозита слишком мала (минимум %{amount})"},
    "captcha_failed": {"en": "Captcha verification failed", "tr": "CAPTCHA doğrulaması başarısız",
                       "ru": "Проверка капчи не пройдена"},
    "account_blocked": {"en": "Account is blocked", "tr": "Hesabınız engellendi", "ru": "Аккаунт заблокирован"},
    "invalid_credentials": {"en": "Invalid email or password", "tr": "Geçersiz e-posta veya şifre",
                            "ru": "Неверный адрес электронной почты или пароль"},
    "unknown_error": {"en": "Unknown error", "tr": "Bilinmeyen hata", "ru": "Неизвестная ошибка"},
}

ERRORS_BY_ACTION = {
    "signup": ["email_taken", "email_invalid", "password_too_short", "rate_limited", "phone_invalid",
               "country_not_supported", "currency_not_supported", "captcha_failed", "unknown_error"],
    "login": ["invalid_credentials", "account_blocked", "rate_limited", "captcha_failed", "unknown_error"],
    "validate": ["email_taken", "email_invalid", "phone_invalid", "password_too_short"],
    "restore_password": ["email_invalid", "rate_limited", "unknown_error"],
    "deposit": ["deposit_too_small", "currency_not_supported", "account_blocked", "unknown_error"],
}

USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.6668.100 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0",
    "okhttp/4.12.0",
    "MyBrand/3.4.1 (Android 13; \"Pixel 7\"; ru-RU)",
    "Mozilla/5.0 (Linux; Android 12; Redmi Note 11) AppleWebKit/537.36 (KHTML, like Gecko) YaBrowser/24.4 Яндекс Браузер Mobile Safari/537.36",
]
HOSTS = ["api.example.com", "api.example-mirror.net", "api2.example-mirror.org", "m.example.com"]
PATHS = {"signup": ["/graphql", "/api/v1/signup"], "login": ["/graphql", "/api/v1/login"],
         "validate": ["/graphql", "/api/v1/validate"], "restore_password": ["/graphql", "/api/v1/password/restore"],
         "deposit": ["/graphql", "/api/v1/payments/deposit"]}
# Addresses in the networks of MaxMind's GeoIP2-City-Test database, and other public ones.
IPS = ["81.2.69.142", "81.2.69.160", "89.160.20.112", "89.160.20.128", "175.16.199.0", "216.160.83.56",
       "2001:218::1", "2001:220::abcd", "2a02:cf40::1", "2001:480::1", "67.43.156.0", "202.196.224.1",
       "149.101.100.0", "85.100.12.7", "95.173.136.70", "31.13.72.36", "2a03:2880:f12f:83:face:b00c::25de",
       "188.119.45.1", "5.255.255.70", "2a02:6b8::2:242"]
# The sample City database (invented for the samples, not real allocations): network ->
# (country, city). Nested networks on purpose (a /24 inside a /16 with another city).
# 149.101.100.0 and 2001:480::1 are in no network: their geo is NULL unless Cloudflare says.
GEO_NETWORKS = [
    ("81.2.69.0/24", "GB", "London"), ("81.2.69.160/27", "GB", "Manchester"),
    ("89.160.20.0/24", "SE", "Linköping"), ("175.16.199.0/24", "CN", "Changchun"),
    ("216.160.83.0/24", "US", "Milton"), ("67.43.156.0/24", "BT", None), ("202.196.224.0/20", "PH", None),
    ("85.100.0.0/16", "TR", "Ankara"), ("85.100.12.0/24", "TR", "İstanbul"), ("95.173.136.0/21", "RU", "Москва"),
    ("31.13.72.0/24", "SE", "Luleå"), ("188.119.45.0/24", "KZ", "Almaty"), ("5.255.255.0/24", "RU", None),
    ("2001:218::/32", "JP", "Tokyo"), ("2001:220::/32", "KR", None), ("2a02:cf40::/29", "NO", None),
    ("2a03:2880::/32", "IE", "Dublin"), ("2a02:6b8::/32", "RU", "Москва"),
]
# IP-to-ASN ranges (the iptoasn.com TSV shape). AS 0 is "not routed"; "None" no country.
ASN_RANGES = [
    ("5.255.255.0", "5.255.255.255", 13238, "RU", "YANDEX LLC"),
    ("31.13.64.0", "31.13.127.255", 32934, "US", "FACEBOOK"),
    ("81.2.69.0", "81.2.69.255", 20712, "GB", "Andrews & Arnold Ltd"),
    ("85.100.0.0", "85.100.255.255", 9121, "TR", "TTNET Türk Telekomünikasyon"),
    ("89.160.0.0", "89.160.255.255", 29518, "SE", "Bredband2 AB"),
    ("95.173.128.0", "95.173.159.255", 0, "None", "Not routed"),
    ("175.16.0.0", "175.16.255.255", 4837, "CN", "CHINA UNICOM China169 Backbone"),
    ("188.119.45.0", "188.119.45.255", 21299, "KZ", "Kar-Tel LLC, \"Beeline\" Kazakhstan"),
    ("216.160.83.0", "216.160.83.255", 209, "None", "CENTURYLINK-US-LEGACY-QWEST"),
    ("2001:218::", "2001:218:ffff:ffff:ffff:ffff:ffff:ffff", 2914, "JP", "NTT-COMMUNICATIONS-2914"),
    ("2a02:6b8::", "2a02:6b8:ffff:ffff:ffff:ffff:ffff:ffff", 13238, "RU", "YANDEX LLC"),
    ("2a03:2880::", "2a03:2880:ffff:ffff:ffff:ffff:ffff:ffff", 32934, "US", "FACEBOOK"),
]


def geo_country(ip):
    """The sample City database's country of an address: its longest matching network."""
    addr = ipaddress.ip_address(ip)
    best = None
    for cidr, country, _ in GEO_NETWORKS:
        net = ipaddress.ip_network(cidr)
        if addr.version == net.version and addr in net and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, country)
    return best[1] if best else None


def asn_of(ip):
    """(number, organisation, country) of an address in ASN_RANGES, or Nones."""
    addr = ipaddress.ip_address(ip)
    for start, end, number, country, name in ASN_RANGES:
        a, b = ipaddress.ip_address(start), ipaddress.ip_address(end)
        if a.version == addr.version and a <= addr <= b and number != 0:
            return str(number), name, None if country == "None" else country
    return None, None, None


def write_geo():
    os.makedirs(os.path.join(ROOT, "Samples/geo"), exist_ok=True)
    networks = []
    for cidr, country, city in GEO_NETWORKS:
        record = {"country": {"iso_code": country, "names": {"en": country}}}
        if city:
            record["city"] = {"names": {"en": city}}
        networks.append((cidr, record))
    path = os.path.join(ROOT, "Samples/geo/sample-city.mmdb")
    write_mmdb(path, networks, "Sluice-Sample-City", "sluice sample City database (invented networks)")
    with open(os.path.join(ROOT, "Samples/geo/ip2asn.tsv"), "w", encoding="utf-8", newline="") as f:
        for r in ASN_RANGES:
            f.write("\t".join(str(x) for x in r) + "\n")
    try:  # MaxMind's own reader, when installed (scripts/setup puts it in .venv-test)
        import maxminddb
    except ImportError:
        return
    with maxminddb.open_database(path) as db:
        for ip in IPS:
            got = db.get(ip)
            assert (got or {}).get("country", {}).get("iso_code") == geo_country(ip), ip


COUNTRIES = [("TR", "TRY", "+90", "tr"), ("RU", "RUB", "+7", "ru"), ("GB", "GBP", "+44", "en"),
             ("DE", "EUR", "+49", "en"), ("JP", "JPY", "+81", "en"), ("BR", "BRL", "+55", "en"),
             ("US", "USD", "+1", "en"), ("KZ", "KZT", "+7", "ru")]
DOMAINS = ["gmail.com", "gmail.com", "gmail.com", "yahoo.com", "hotmail.com", "mail.ru", "yandex.ru", "outlook.com",
           "gmul.com", "gmial.com", "hotmial.com", "yaho.com"]
NAMES = ["ayse", "mehmet", "ivan", "olga", "john", "emma", "kenji", "lucas", "zeynep", "dmitry", "İlker", "ığdır"]


def ru_plural(n):
    if n % 10 == 1 and n % 100 != 11:
        return "one"
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return "few"
    return "many"


def message(key, locale, values):
    entry = CATALOG[key][locale]
    if isinstance(entry, dict):
        n = values["count"]
        form = ru_plural(n) if locale == "ru" else ("one" if n == 1 else "other")
        entry = entry.get(form, entry["other"])
    for name, v in values.items():
        entry = entry.replace("%{" + name + "}", str(v))
    return entry


def write_catalogs():
    os.makedirs(os.path.join(ROOT, "Samples/i18n"), exist_ok=True)
    for locale in ["en", "tr", "ru"]:
        lines = ["# The product's API error messages (Rails i18n shape). Written by Samples/generate_signup_samples.py.",
                 f"{locale}:", "  errors:", "    signup:"]
        for key, texts in CATALOG.items():
            t = texts[locale]
            if isinstance(t, dict):
                lines.append(f"      {key}:")
                for form, text in t.items():
                    lines.append(f"        {form}: {json.dumps(text, ensure_ascii=False)}")
            else:
                lines.append(f"      {key}: {json.dumps(t, ensure_ascii=False)}")
        with open(os.path.join(ROOT, f"Samples/i18n/errors.{locale}.yml"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")


# --- the model of what sluice outputs -------------------------------------------------

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
        ks = sorted(v, key=lambda k: k.encode("utf-8"))
        return b"o" + str(len(v)).encode() + b":" + b"".join(enc_str(k) + enc(v[k]) for k in ks)
    raise TypeError(type(v))


def record_key(obj):
    data = b"sluice-key-v1\x00" + enc_str(PIPELINE) + enc_str("request_id") + enc(obj.get("request_id"))
    return hashlib.sha256(data).hexdigest()[:32]


def get(obj, path):
    cur = obj
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return None
    return cur


def to_json(v):
    return None if v is None else json.dumps(v, ensure_ascii=False, separators=(",", ":"))


class Reject(Exception):
    def __init__(self, kind):
        self.kind = kind


def parse_time(text):
    if not isinstance(text, str):
        raise ValueError
    d = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if d.tzinfo is None:
        d = d.replace(tzinfo=datetime.timezone.utc)
    return d.astimezone(datetime.timezone.utc)


def as_string(v):
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return json.dumps(v)
    raise Reject("schema")


def as_integer(v):
    if v is None:
        return None
    if isinstance(v, bool):
        raise Reject("schema")
    if isinstance(v, int):
        if not -2**63 <= v < 2**63:
            raise Reject("schema")
        return v
    if isinstance(v, float):
        if v != int(v) or not -2**63 <= v < 2**63:
            raise Reject("schema")
        return int(v)
    if isinstance(v, str):
        try:
            n = int(v.strip(" \t"))
        except ValueError:
            raise Reject("schema")
        if not -2**63 <= n < 2**63:
            raise Reject("schema")
        return n
    raise Reject("schema")


def expected_row(obj):
    """The row sluice loads from one parsed line, or raises Reject(kind)."""
    if not isinstance(obj, dict):
        raise Reject("not_an_object")
    try:
        ts = parse_time(obj.get("timestamp"))
    except (ValueError, TypeError):
        raise Reject("bad_time")
    row = {
        "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "user_agent": as_string(get(obj, "headers.user-agent")),
        "ip": as_string(get(obj, "ip")),
        "geo": geo_of(obj),
        "as_country_code": None, "as_description": None, "as_number": None,
        "domain": as_string(get(obj, "host")),
        "path": as_string(get(obj, "path")),
        "query": as_string(get(obj, "query")),
        "action": as_string(get(obj, "action")),
        "fp": as_string(get(obj, "headers.x-fingerprint")),
        "referrer": as_string(get(obj, "headers.referer")),
        "email": as_string(get(obj, "body.email")),
        "country": as_string(get(obj, "body.country")),
        "currency": as_string(get(obj, "body.currency")),
        "phone": as_string(get(obj, "body.phone")),
        "status": as_string(get(obj, "response.status")),
        "aff_data": to_json(get(obj, "body.affiliate_data")),
        "additional_data": to_json(get(obj, "body.extra")),
        "resp": to_json(get(obj, "response")),
        "duration": as_integer(get(obj, "duration_ns")),
        "error_code": None, "error_values": None,
        "record_key": record_key(obj),
    }
    if row["action"] is None:
        raise Reject("schema")
    ip = get(obj, "ip")
    if isinstance(ip, str):
        try:
            row["as_number"], row["as_description"], row["as_country_code"] = asn_of(ip)
        except ValueError:
            pass
    return row


def geo_of(obj):
    """A Cloudflare country header that names a country (two capitals, not XX or T1)
    wins; else the sample database's country of the IP."""
    header = get(obj, "headers.cf-ipcountry")
    if isinstance(header, str) and len(header) == 2 and header.isascii() and header.isupper() and header.isalpha() \
            and header not in ("XX", "T1"):
        return header
    ip = get(obj, "ip")
    if isinstance(ip, str):
        try:
            return geo_country(ip)
        except ValueError:
            return None
    return None


def osa(a, b):
    """Optimal string alignment distance (a swap of neighbours is one edit)."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def email_suggestion(email):
    if not isinstance(email, str) or "@" not in email:
        return None
    domain = email.rsplit("@", 1)[1].lower()
    if not domain or domain in PROVIDERS:
        return None
    scored = sorted((osa(domain, p), p) for p in PROVIDERS)
    best = [p for dist, p in scored if dist == scored[0][0] and dist <= 2]
    return best[0] if len(best) == 1 else None


def error_code(obj):
    text = get(obj, "response.error.message")
    if not isinstance(text, str) or text == "":
        return None, None
    if text not in GENERATED_ERRORS:
        return "UNKNOWN", None
    key, values = GENERATED_ERRORS[text]
    code = "errors.signup." + key
    if not values:
        return code, None
    typed = {k: (v if isinstance(v, int) else str(v)) for k, v in sorted(values.items())}
    return code, json.dumps(typed, ensure_ascii=False, separators=(",", ":"))


def csv_field(v):
    if v is None:
        return ""
    if v is True or v is False:
        return "true" if v else "false"
    s = str(v)
    if s == "" or any(c in s for c in ',"\r\n'):
        return '"' + s.replace('"', '""') + '"'
    return s


def csv_line(values):
    return ",".join(csv_field(v) for v in values) + "\r\n"


# --- the inputs -----------------------------------------------------------------------

def make_request(rng, day, seconds, heavy_fp=None, limited=False):
    """One API request. heavy_fp: the fingerprint of a burst of sign-ups; limited: the
    API answered it with its rate-limit error (it does so after 30 sign-ups in an hour)."""
    action = "signup" if heavy_fp else rng.choice(["signup", "signup", "login", "login", "validate", "restore_password", "deposit"])
    country, currency, dial, locale = rng.choice(COUNTRIES)
    ts = datetime.datetime.fromisoformat(day).replace(tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    micros = rng.randrange(1_000_000)
    ts_text = ts.strftime("%Y-%m-%dT%H:%M:%S") + f".{micros:06d}Z"
    if rng.random() < 0.006 and ts.hour >= 4:
        # Same instant written with an offset: sluice normalizes it to UTC.
        local = ts + datetime.timedelta(hours=3)
        ts_text = local.strftime("%Y-%m-%dT%H:%M:%S") + f".{micros // 100000}+03:00"
        ts = ts.replace(microsecond=(micros // 100000) * 100000)
    headers = {"user-agent": rng.choice(USER_AGENTS)}
    if rng.random() < 0.8:
        headers["referer"] = rng.choice(["https://example.com/landing", "https://example.com/promo?utm=tg",
                                         "https://google.com/", "android-app://com.example"])
    if rng.random() < 0.4:
        headers["cf-ipcountry"] = rng.choice([country, country, country, "XX", "T1"])
    if heavy_fp:
        headers["x-fingerprint"] = heavy_fp
    elif rng.random() < 0.9:
        headers["x-fingerprint"] = "fp_" + "%012x" % rng.getrandbits(48)
    name = rng.choice(NAMES) + str(rng.randrange(1000))
    body = {}
    if action in ("signup", "validate", "login", "restore_password"):
        body["email"] = f"{name}@{rng.choice(DOMAINS)}"
    if action in ("signup", "validate"):
        body["country"] = country
        body["currency"] = currency
        body["phone"] = dial + str(rng.randrange(10**9, 10**10))
        body["affiliate_data"] = {"aff_id": str(rng.randrange(100, 999)), "promo_id": rng.choice(["P1", "WELCOME", "BONUS100"]),
                                  "click_id": "c-" + "%08x" % rng.getrandbits(32)}
    if action == "deposit":
        body["currency"] = currency
        body["amount"] = rng.choice([5, 10, 25.5, 100, 0.5])
    if rng.random() < 0.6:
        body["extra"] = {"locale": locale, "marketing_opt_in": rng.random() < 0.5}
        if rng.random() < 0.3:
            body["extra"]["note"] = rng.choice(["tab\tand \"quotes\"", "line\nbreak", "comma, inside", "emoji 🎉", ""])
    error = rng.random() < 0.3 or limited
    if error:
        key = "rate_limited" if limited else rng.choice(ERRORS_BY_ACTION[action])
        values = {}
        if key in ("password_too_short",):
            values["count"] = rng.choice([1, 3, 8, 21, 22])
        if key == "rate_limited":
            values["count"] = 30
        if key == "deposit_too_small":
            values["amount"] = rng.choice(["10 TRY", "5 USD", "100 RUB"])
        text = message(key, locale, values)
        if rng.random() < 0.1:
            text = "  " + text.upper() + " "
        previous = GENERATED_ERRORS.setdefault(text, (key, dict(values)))
        assert previous == (key, values) or previous[0] == key, text
        response = {"http_status": rng.choice([400, 422, 429]) if key != "unknown_error" else 500,
                    "status": "error", "error": {"message": text, "locale": locale}}
    else:
        status = rng.choice(["success"] * 8 + ["test", "multi_acc"])
        response = {"http_status": 200, "status": status}
        if action in ("signup", "login"):
            response["user_id"] = rng.randrange(10**6, 10**7)
    request = {
        "timestamp": ts_text,
        "request_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "method": "POST",
        "host": rng.choice(HOSTS),
        "path": rng.choice(PATHS[action]),
    }
    q = rng.random()
    if q < 0.5:
        request["query"] = rng.choice(["utm_source=google&utm_campaign=autumn", "ref=tg", "lang=tr&promo=P1"])
    elif q < 0.6:
        request["query"] = ""
    request["action"] = action
    request["ip"] = rng.choice(IPS)
    request["headers"] = headers
    request["body"] = body
    request["response"] = response
    request["duration_ns"] = rng.randrange(5_000_000, 900_000_000)
    return request


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


VARIANTS = {}  # kind -> how many bad lines of that kind were made so far (variants take turns)


def variant(kind, n):
    i = VARIANTS.get(kind, 0)
    VARIANTS[kind] = i + 1
    return i % n


def malformed(rng, kind, day):
    """One bad line (bytes) of the given kind."""
    good = dumps(make_request(rng, day, rng.randrange(86400))).encode()
    if kind == "malformed_json":
        # a truncated object, trailing garbage, single quotes
        return [good[:-7], good + b" trailing", good.replace(b'"', b"'", 6)][variant(kind, 3)]
    if kind == "invalid_utf8":
        v = variant(kind, 3)
        if v == 0:
            return good.replace(b'"POST"', b'"PO\xff\xfeST"', 1)          # bytes that never occur in UTF-8
        if v == 1:
            return good.replace(b'"user-agent":"', b'"user-agent":"\xc3(', 1)  # a lead byte without its continuation
        return good.replace(b'"path":"', b'"path":"\xed\xa0\x80', 1)        # an encoded surrogate (U+D800)
    if kind == "not_an_object":
        return [b"[1,2]", b'"x"', b"42"][variant(kind, 3)]
    if kind == "line_too_long":
        obj = make_request(rng, day, rng.randrange(86400))
        obj["body"]["extra"] = {"blob": "A" * (MAX_LINE + 1000)}
        return dumps(obj).encode()
    if kind == "bad_time":
        obj = make_request(rng, day, rng.randrange(86400))
        v = variant(kind, 3)
        if v == 0:
            del obj["timestamp"]
        else:
            obj["timestamp"] = ["yesterday", "2026-13-45T00:00:00Z"][v - 1]
        return dumps(obj).encode()
    if kind == "schema":
        obj = make_request(rng, day, rng.randrange(86400))
        choice = variant(kind, 4)
        if choice == 0:
            obj["duration_ns"] = "abc"
        elif choice == 1:
            obj["duration_ns"] = 12.5
        elif choice == 2:
            del obj["action"]
        else:
            obj["duration_ns"] = "__BIG__"
            return dumps(obj).replace('"__BIG__"', "99999999999999999999999").encode()
        return dumps(obj).encode()
    raise ValueError(kind)


def build_day(rng, day, index):
    """Files of one day: name -> (list of line bytes, gzip?, truncate-fraction)."""
    requests = []
    for _ in range(720):
        requests.append((rng.randrange(86400), None, False))
    # A fingerprint that signs up 30+ times within one hour (a rate-limit case for later).
    heavy = "fp_heavy_%d" % index
    start = rng.randrange(3600, 80000)
    for k in range(34):
        requests.append((start + k * 90 + rng.randrange(60), heavy, k >= 30))
    requests.sort(key=lambda r: r[0])
    lines = [dumps(make_request(rng, day, s, fp, limited)).encode() for s, fp, limited in requests]
    bad = ["malformed_json", "invalid_utf8", "not_an_object", "bad_time", "schema", "schema"]
    if index == 1:
        bad += ["malformed_json", "bad_time", "schema"]
    if index == 2:
        bad += ["invalid_utf8", "not_an_object", "schema"]
    for kind in bad:
        lines.insert(rng.randrange(len(lines)), malformed(rng, kind, day))
    half = len(lines) // 2
    files = {"api-1.jsonl": (lines[:half], False, None), "api-2.jsonl.gz": (lines[half:], True, None)}
    # Blank lines are not records.
    files["api-1.jsonl"][0].insert(10, b"")
    files["api-1.jsonl"][0].insert(200, b"   ")
    if index == 0:
        # An over-long line, in a gzip file so that it stays small on disk.
        files["api-2.jsonl.gz"][0].insert(5, malformed(rng, "line_too_long", day))
    if index == 1:
        more = [dumps(make_request(rng, day, rng.randrange(86400))).encode() for _ in range(120)]
        files["api-3.jsonl.gz"] = (more, True, 0.6)
    if index == 2:
        more = [dumps(make_request(rng, day, rng.randrange(86400))).encode() for _ in range(60)]
        files["api-4.jsonl"] = (more, True, None)  # gzip content, plain name
    return files


def main():
    rng = random.Random(SEED)
    write_catalogs()
    write_geo()
    dead = []
    summary = []
    rows_by_day = {}
    rate_seen = {}  # fingerprint -> event times of the records seen so far, in input order
    for index, day in enumerate(DATES):
        day_dir = os.path.join(ROOT, "Samples/logs/api", day)
        os.makedirs(day_dir, exist_ok=True)
        for old in os.listdir(day_dir):
            os.remove(os.path.join(day_dir, old))
        rows = []
        read = 0
        for name, (lines, compress, cut) in sorted(build_day(rng, day, index).items()):
            rel = f"Samples/logs/api/{day}/{name}"
            data = b"".join(l + b"\n" for l in lines)
            if compress:
                data = gzip.compress(data, mtime=0)
            if cut:
                data = data[: int(len(data) * cut)]
            with open(os.path.join(ROOT, rel), "wb") as f:
                f.write(data)
            # What a reader gets back from the bytes written.
            if compress:
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                text = d.decompress(data)
                truncated = not d.eof
            else:
                text, truncated = data, False
            parts = text.split(b"\n")
            complete, tail = parts[:-1], parts[-1]
            if not truncated and tail:
                complete.append(tail)
            for number, raw in enumerate(complete, start=1):
                if raw.strip(b" \t\r") == b"":
                    continue
                read += 1
                if len(raw) > MAX_LINE:
                    dead.append((day, rel, number, "line_too_long"))
                    continue
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    dead.append((day, rel, number, "invalid_utf8"))
                    continue
                try:
                    obj = json.loads(raw)
                except ValueError:
                    dead.append((day, rel, number, "malformed_json"))
                    continue
                try:
                    if isinstance(obj, dict):
                        try:
                            t = parse_time(obj.get("timestamp"))
                        except (ValueError, TypeError):
                            t = None
                        fp = get(obj, "headers.x-fingerprint")
                        if t is not None:
                            micros = int(t.timestamp()) * 1_000_000 + t.microsecond
                            if isinstance(fp, str):
                                seen = rate_seen.setdefault(fp, [])
                                seen.append(micros)
                                rate = (sum(1 for x in seen if micros - WINDOW < x <= micros),)
                            else:
                                rate = (None,)
                    row = expected_row(obj)
                    code, values = error_code(obj)
                    row["error_code"], row["error_values"] = code, values
                    row["fp_count_1h"] = rate[0]
                    row["fp_over_limit"] = None if rate[0] is None else rate[0] > LIMIT
                    row["email_domain_suggestion"] = email_suggestion(get(obj, "body.email"))
                    rows.append(row)
                except Reject as r:
                    dead.append((day, rel, number, r.kind))
            if truncated:
                read += 1
                dead.append((day, rel, len(complete) + 1, "truncated_gzip"))
        rows_by_day[day] = rows
        rejected = sum(1 for d in dead if d[0] == day)
        summary.append((day, read, len(rows), 0, rejected))
    write_expected(PIPELINE, COLUMNS, rows_by_day, dead, summary)


def write_expected(pipeline, columns, rows_by_day, dead, summary):
    out = os.path.join(ROOT, "Samples/expected", pipeline)
    os.makedirs(out, exist_ok=True)
    for day, rows in rows_by_day.items():
        with open(os.path.join(out, f"{day}.csv"), "w", encoding="utf-8", newline="") as f:
            f.write(csv_line(columns))
            for r in rows:
                f.write(csv_line([r[c] for c in columns]))
    with open(os.path.join(out, "dead_letters.csv"), "w", encoding="utf-8", newline="") as f:
        f.write(csv_line(["date", "file", "line", "kind"]))
        for d in dead:
            f.write(csv_line(d))
    with open(os.path.join(out, "summary.csv"), "w", encoding="utf-8", newline="") as f:
        f.write(csv_line(["date", "read", "loaded", "filtered", "rejected"]))
        for s in summary:
            f.write(csv_line(s))
    for s in summary:
        print(f"{pipeline} %s: read %d, loaded %d, filtered %d, rejected %d" % s)


if __name__ == "__main__":
    main()
