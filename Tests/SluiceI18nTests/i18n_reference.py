#!/usr/bin/env python3
"""Independent reference reader for the SluiceI18n tests.

Usage: i18n_reference.py FILE...   (prints one JSON object keyed by file)

- .po: polib; every entry that is not obsolete, not fuzzy and not the header, in file order,
  as {ctx, id, id_plural, strs}.
- .mo: the standard gettext module (GNUTranslations._catalog, keys "ctx\\x04id" / (id, n))
  plus polib.mofile for msgid_plural; header excluded.
- .yml/.yaml: PyYAML safe_load, flattened: nested mappings joined with ".", a mapping whose keys
  are all CLDR plural categories and whose values are all str/None is one key with plural forms,
  only str values are messages, root keys are locales.
Exits non-zero when polib or PyYAML is missing, so the Swift test fails loudly.
"""
import gettext
import json
import sys

try:
    import polib
    import yaml
except ImportError as e:  # pragma: no cover
    sys.stderr.write("reference needs polib and PyYAML (pip install polib pyyaml): %s\n" % e)
    sys.exit(3)

PLURAL = {"zero", "one", "two", "few", "many", "other"}


def po(path):
    out = []
    for e in polib.pofile(path, wrapwidth=0):
        if e.obsolete or "fuzzy" in e.flags or (e.msgid == "" and e.msgctxt is None):
            continue
        if e.msgid_plural:
            strs = [e.msgstr_plural[k] for k in sorted(e.msgstr_plural)]
        else:
            strs = [e.msgstr]
        out.append({"ctx": e.msgctxt, "id": e.msgid, "id_plural": e.msgid_plural or None, "strs": strs})
    return out


def mo(path):
    with open(path, "rb") as f:
        t = gettext.GNUTranslations(f)
    cat = {}
    for key, value in t._catalog.items():
        if isinstance(key, tuple):
            msgid, n = key
        else:
            msgid, n = key, None
        if msgid == "":
            continue
        ctx = None
        if "\x04" in msgid:
            ctx, msgid = msgid.split("\x04", 1)
        item = cat.setdefault((ctx, msgid), {"ctx": ctx, "id": msgid, "id_plural": None, "strs": {}})
        item["strs"][-1 if n is None else n] = value
    plurals = {}
    for e in polib.mofile(path):
        if e.msgid_plural:
            plurals[(e.msgctxt, e.msgid)] = e.msgid_plural
    out = []
    for (ctx, msgid), item in sorted(cat.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
        strs = item["strs"]
        item["strs"] = [strs[-1]] if -1 in strs else [strs[i] for i in sorted(strs)]
        item["id_plural"] = plurals.get((ctx, msgid))
        out.append(item)
    return out


def flatten(node, prefix, locale, out):
    for key, value in node.items():
        key = str(key)
        full = key if not prefix else prefix + "." + key
        if isinstance(value, str):
            out.append({"locale": locale, "key": full, "form": None, "text": value})
        elif isinstance(value, dict):
            if value and all(str(k) in PLURAL for k in value) and all(v is None or isinstance(v, str) for v in value.values()):
                for form, text in value.items():
                    if isinstance(text, str):
                        out.append({"locale": locale, "key": full, "form": str(form), "text": text})
            else:
                flatten(value, full, locale, out)


def yml(path):
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    out = []
    for locale, tree in doc.items():
        if isinstance(tree, dict):
            flatten(tree, "", str(locale), out)
    return out


def main(paths):
    result = {}
    for p in paths:
        if p.endswith(".po"):
            result[p] = po(p)
        elif p.endswith(".mo"):
            result[p] = mo(p)
        elif p.endswith((".yml", ".yaml")):
            result[p] = yml(p)
        else:
            raise SystemExit("unknown file type: " + p)
    json.dump(result, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main(sys.argv[1:])
