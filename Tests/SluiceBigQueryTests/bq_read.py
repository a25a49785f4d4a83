#!/usr/bin/env python3
"""Independent reader of a BigQuery table (emulator or real) for sluice's tests.

Usage: bq_read.py ENDPOINT PROJECT DATASET TABLE
Prints one JSON object per row ({column: value as the API returns it}), read with
tables.get (the column names) and tabledata.list (every page), using only the
standard library: nothing of sluice's code is involved.
"""
import json
import sys
import urllib.parse
import urllib.request


def get(url):
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.load(r)


def main():
    endpoint, project, dataset, table = sys.argv[1:5]
    base = f"{endpoint}/bigquery/v2/projects/{project}/datasets/{dataset}/tables/{table}"
    names = [f["name"] for f in get(base)["schema"]["fields"]]
    token = None
    while True:
        query = {"maxResults": "10000"}
        if token:
            query["pageToken"] = token
        page = get(base + "/data?" + urllib.parse.urlencode(query))
        for row in page.get("rows", []):
            cells = [c.get("v") for c in row["f"]]
            print(json.dumps(dict(zip(names, cells)), sort_keys=True))
        token = page.get("pageToken")
        if not token:
            break


if __name__ == "__main__":
    main()
