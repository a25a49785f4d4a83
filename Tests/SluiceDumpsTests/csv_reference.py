#!/usr/bin/env python3
"""Reference for the CSV reader: reads a CSV file with Python's csv module (strict) and
prints JSON {"records": [{"line": L, "fields": [...]}, ...], "error": {"line": L} | null}.
`line` is the 1-based line where a record starts; blank lines ([] in Python) are left out."""
import csv
import json
import sys

path, delimiter, quote = sys.argv[1], sys.argv[2], sys.argv[3]
csv.field_size_limit(sys.maxsize)
records, error = [], None
with open(path, newline="", encoding="utf-8-sig") as f:
    kwargs = {"delimiter": delimiter, "strict": True}
    if quote:
        kwargs["quotechar"] = quote
    else:
        kwargs["quoting"] = csv.QUOTE_NONE
    reader = csv.reader(f, **kwargs)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:
            error = {"line": start}
            break
        if row:
            records.append({"line": start, "fields": row})
        start = reader.line_num + 1
print(json.dumps({"records": records, "error": error}))
