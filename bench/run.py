#!/usr/bin/env python3
"""The throughput benchmark (issue #7): sluice's signup pipeline against DuckDB and jq on
the same generated API log. Run it through `scripts/benchmark`, which builds sluice in
release mode first and passes the binary here.

For each tool: wall time, records/s, MB/s (input bytes), peak RSS (the child's
ru_maxrss, from wait4) and CPU time / wall time (how many cores it kept busy); then the
ratio sluice/DuckDB (DuckDB's wall time over sluice's: >= 1.0 means sluice is at least as
fast) and sluice/jq. With --big, sluice runs again on a larger file to show whether its
peak memory grows with the input.

A run's wall time moves by 10% and more from one run to the next on a shared machine.
With --repeat N the 1M-line runs of sluice and DuckDB (jq's ~27 s are steady) are made N
times, in turns, and each tool's median run is reported, with every time. With
--baseline BIN another sluice binary (the commit before a change) runs in the same turns,
and its output must be the same bytes: before and after figures of one hour.

With --sink warehouse sluice loads the local warehouse (SQLite) instead of the CSV file;
with --sink bigquery it streams into the BigQuery emulator (PyPI `bqemulator`, the tests'
one: SLUICE_BQ_PYTHON or .venv-bq, from scripts/setup), started afresh on loopback for
each run. The emulator takes ~1,800 rows/s, so that run's wall time is the emulator's:
what it measures is sluice's own CPU time and peak memory (use --lines 100000).
"""
import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sqlite3
import sys
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATE = "2026-11-18"

DUCKDB_COLUMNS = {
    "timestamp": "VARCHAR", "request_id": "VARCHAR", "method": "VARCHAR", "host": "VARCHAR", "path": "VARCHAR",
    "query": "VARCHAR", "action": "VARCHAR", "ip": "VARCHAR",
    "headers": 'STRUCT("user-agent" VARCHAR, referer VARCHAR, "cf-ipcountry" VARCHAR, "x-fingerprint" VARCHAR)',
    "body": "JSON", "response": "JSON", "duration_ns": "BIGINT",
}
# The same columns as the pipeline's CSV (no enrichment: geo, asn, error code, rate limit absent).
DUCKDB_SELECT = """
    timestamp, headers."user-agent" AS user_agent, ip, host AS domain, path, query, action,
    headers."x-fingerprint" AS fp, headers.referer AS referrer, body->>'$.email' AS email,
    body->>'$.country' AS country, body->>'$.currency' AS currency, body->>'$.phone' AS phone,
    response->>'$.status' AS status, body->'$.affiliate_data' AS aff_data, body->'$.extra' AS additional_data,
    response AS resp, duration_ns AS duration, request_id
"""
JQ_FILTER = ('[.timestamp, .headers["user-agent"], .ip, .host, .path, .query, .action, .headers["x-fingerprint"], '
             '.headers.referer, .body.email, .body.country, .body.currency, .body.phone, .response.status, '
             '(.body.affiliate_data | if . == null then null else tojson end), '
             '(.body.extra | if . == null then null else tojson end), (.response | tojson), .duration_ns, .request_id] | @csv')


def measure(argv, stdout=None, cwd=None, env=None):
    """Runs a command; returns (wall seconds, peak RSS bytes, CPU seconds)."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=stdout, cwd=cwd, env=env)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"benchmark: {argv[0]} failed with status {proc.returncode}")
    return wall, ru.ru_maxrss * 1024, ru.ru_utime + ru.ru_stime


def ensure_input(data, lines, city):
    """The generated log of `lines` lines (and the shared IP-to-ASN table), made once."""
    folder = os.path.join(data, f"lines-{lines}")
    path = os.path.join(folder, DATE, "api.jsonl")
    asn = os.path.join(data, "ip2asn.tsv")
    if not os.path.exists(path) or not os.path.exists(asn):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        print(f"generating {lines:,} lines into {path} ...", flush=True)
        t = time.monotonic()
        subprocess.run([sys.executable, os.path.join(REPO, "bench/generate.py"), "--lines", str(lines), "--out", path,
                        "--city", city, "--asn-out", asn], check=True)
        print(f"  generated in {time.monotonic() - t:.1f} s", flush=True)
    return folder, path, asn


def day_file(data, lines, date):
    """The generated log of one date of the `lines`-line days."""
    return os.path.join(data, f"lines-{lines}", date, "api.jsonl")


def days_bytes(data, lines, dates):
    return sum(os.path.getsize(day_file(data, lines, d)) for d in dates)


def ensure_day(data, lines, city, day):
    """Day `day` (after DATE) of the `lines`-line log, beside the first, for a backfill."""
    date = (datetime.date.fromisoformat(DATE) + datetime.timedelta(days=day)).isoformat()
    path = day_file(data, lines, date)
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        print(f"generating day {date}: {lines:,} lines into {path} ...", flush=True)
        subprocess.run([sys.executable, os.path.join(REPO, "bench/generate.py"), "--lines", str(lines), "--out", path,
                        "--city", city, "--day", str(day)], check=True)
    return date


def variant(text, stages, sink):
    """The pipeline with only the stages named in `stages` (None: all of them), loaded to
    `sink`: "csv" (as it is), or "warehouse" or "bigquery" (the default target's table
    instead: the local SQLite one, or the emulator's, see `make_project`)."""
    head, rest = text.split("transform:\n", 1)
    transform, load = rest.split("load:\n", 1)
    blocks = re.split(r"(?m)^(?=  - kind: )", transform)
    kept = [b for b in blocks if b and (stages is None or b.split("kind:", 1)[1].split()[0] in stages)]
    if sink in ("warehouse", "bigquery"):
        load = load.replace("  - kind: csv\n    path: \"out/{date}.csv\"\n", "  - kind: warehouse\n    table: signup_attempts\n")
    return head + "transform:\n" + "".join(kept) + "load:\n" + load


def ensure_asn(data, ranges):
    """The IP-to-ASN table the pipeline reads: the generated one (one range per network the
    log's addresses come from), or with `ranges` that one widened to a real table's size
    (`bench/asn_table.py`), made once."""
    base = os.path.join(data, "ip2asn.tsv")
    if not ranges:
        return base
    path = os.path.join(data, f"ip2asn-{ranges}.tsv")
    if not os.path.exists(path):
        print(f"widening the IP-to-ASN table to {ranges:,} ranges into {path} ...", flush=True)
        subprocess.run([sys.executable, os.path.join(REPO, "bench/asn_table.py"), "--base", base, "--ranges", str(ranges),
                        "--out", path], check=True, cwd=os.path.join(REPO, "bench"))
    return path


# The IP-to-ASN table of this benchmark run (`--asn-ranges`; `ensure_asn`).
ASN_TABLE = None


def make_project(data, folder, city, stages=None, sink="csv", endpoint=None):
    """The benchmark's project (bench/project) in a scratch folder, over the log in `folder`
    (with `stages` and `sink`, a variant: see `variant`; for "bigquery", a default target
    of kind bigquery at the emulator's `endpoint`)."""
    project = os.path.join(data, "project")
    shutil.rmtree(project, ignore_errors=True)
    os.makedirs(os.path.join(project, "Pipelines"))
    shutil.copy(os.path.join(REPO, "bench/project/sluice.yml"), project)
    if sink == "bigquery":
        with open(os.path.join(project, "sluice.yml"), "w", encoding="utf-8") as f:
            f.write(BIGQUERY_PROJECT.format(endpoint=endpoint))
    with open(os.path.join(REPO, "bench/project/Pipelines/signup_bench.yml"), encoding="utf-8") as f:
        text = f.read()
    text = text.replace("@ASN@", ASN_TABLE or os.path.join(data, "ip2asn.tsv")).replace("@DATA@/{date}", os.path.join(folder, "{date}"))
    text = text.replace("@DATA@", data).replace("@CITY@", city).replace("@REPO@", REPO)
    text = variant(text, stages, sink)
    with open(os.path.join(project, "Pipelines/signup_bench.yml"), "w", encoding="utf-8") as f:
        f.write(text)
    return project


BIGQUERY_PROJECT = """default_target: emulator
targets:
  emulator:
    kind: bigquery
    project: bench
    dataset: bench
    location: US
    endpoint: {endpoint}
state:
  kind: sqlite
  path: .sluice/state.sqlite
"""


class Emulator:
    """The BigQuery emulator on a free loopback port, with its data in a scratch folder;
    stopped (and its data removed) on exit."""

    def __init__(self, data):
        self.python = os.environ.get("SLUICE_BQ_PYTHON", os.path.join(REPO, ".venv-bq/bin/python"))
        if not os.path.exists(self.python):
            sys.exit(f"benchmark: no BigQuery emulator: {self.python} is missing (run scripts/setup, or set SLUICE_BQ_PYTHON)")
        self.folder = os.path.join(data, "bq-emulator")

    def __enter__(self):
        shutil.rmtree(self.folder, ignore_errors=True)
        os.makedirs(self.folder)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        self.log = open(os.path.join(self.folder, "log"), "wb")
        self.proc = subprocess.Popen([self.python, os.path.join(REPO, "scripts/bq_emulator.py"), "--rest-host", "127.0.0.1",
                                      "--rest-port", str(port), "--grpc-port", "0", "--data-dir", os.path.join(self.folder, "db"),
                                      "--project", "bench", "--log-level", "warning"], stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.endpoint + "/bigquery/v2/projects/bench/datasets", timeout=2).read()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"benchmark: the BigQuery emulator did not start (see {self.log.name})")
                time.sleep(0.3)

    def rows_digest(self, table):
        """The SHA-256 of the table's rows, read back by the tests' reader (bq_read.py),
        in record-key order. In a process of its own: read here, 100,000 rows grew this
        process to ~300 MB, and a child forked after that reports the parent's high-water
        mark as its own peak (Linux keeps `ru_maxrss` across `exec`), so every run after the
        first showed ~312 MB."""
        script = ("import hashlib, json, subprocess, sys\n"
                  "out = subprocess.run([sys.executable] + sys.argv[1:], check=True, capture_output=True).stdout\n"
                  "lines = sorted(out.splitlines(), key=lambda line: json.loads(line)['record_key'])\n"
                  "print(hashlib.sha256(b'\\n'.join(lines)).hexdigest())\n")
        return subprocess.run([sys.executable, "-c", script, os.path.join(REPO, "Tests/SluiceBigQueryTests/bq_read.py"), self.endpoint,
                               "bench", "bench", table], check=True, capture_output=True, text=True).stdout.strip()

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def sluice_in(project, sluice, command, outputs=None, digest=None):
    """One sluice command in the project; its measure and the size of `outputs` (file
    names under out/; all of them when None). With `digest` (a list), the SHA-256 of the
    output files, in name order, is appended to it."""
    result = measure([sluice] + command + ["--project", project], cwd=project)
    outs = os.path.join(project, "out")
    if not os.path.isdir(outs):  # loaded to the warehouse: its file, and the digest of its rows
        warehouse = os.path.join(project, ".sluice/warehouse.sqlite")
        if digest is not None:
            digest.append(table_digest(warehouse, "signup_attempts"))
        return result, os.path.getsize(warehouse)
    names = os.listdir(outs) if outputs is None else outputs
    if digest is not None:
        h = hashlib.sha256()
        for name in sorted(names):
            with open(os.path.join(outs, name), "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        digest.append(h.hexdigest())
    return result, sum(os.path.getsize(os.path.join(outs, f)) for f in names)


def table_digest(path, table):
    """The SHA-256 of a warehouse table's rows, the schema's columns only (not sluice's own
    `_sluice_*` columns, whose values depend on how the rows were committed), in record-key
    order, each value by SQLite's `quote`."""
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    cols = [r[1] for r in c.execute(f'PRAGMA table_info("{table}")') if not r[1].startswith("_sluice_")]
    h = hashlib.sha256()
    select = "SELECT " + " || '|' || ".join(f'quote("{n}")' for n in cols) + f' FROM "{table}" ORDER BY record_key'
    for (line,) in c.execute(select):
        h.update(line.encode() + b"\n")
    c.close()
    return h.hexdigest()


def run_sluice(sluice, data, folder, city, until=None, stages=None, sink="csv", digest=None):
    """One `sluice run` of DATE, or with `until` one `sluice backfill` from DATE to it."""
    command = ["run", "Pipelines/signup_bench.yml", "--date", DATE] if until is None else \
        ["backfill", "Pipelines/signup_bench.yml", "--from", DATE, "--to", until]
    if sink == "bigquery":
        with Emulator(data) as emulator:
            project = make_project(data, folder, city, stages, sink, endpoint=emulator.endpoint)
            result = measure([sluice] + command + ["--project", project], cwd=project)
            if digest is not None:
                digest.append(emulator.rows_digest("signup_attempts"))
            size = 0  # the rows are in the emulator: no local output
    else:
        project = make_project(data, folder, city, stages, sink)
        result, size = sluice_in(project, sluice, command, digest=digest)
    shutil.rmtree(project, ignore_errors=True)
    return result, size


def median_run(results):
    """The run of median wall time (the lower middle one of an even count)."""
    ordered = sorted(results, key=lambda r: r[0][0])
    return ordered[(len(ordered) - 1) // 2]


def run_history(sluice, data, folder, city, dates):
    """A day's run as a new process on the state of the days before it: `sluice backfill`
    of dates[:-1] in one process, then `sluice run` of dates[-1]. Returns both measures."""
    project = make_project(data, folder, city)
    backfill = sluice_in(project, sluice, ["backfill", "Pipelines/signup_bench.yml", "--from", dates[0], "--to", dates[-2]])
    day = sluice_in(project, sluice, ["run", "Pipelines/signup_bench.yml", "--date", dates[-1]], outputs=[dates[-1] + ".csv"])
    shutil.rmtree(project, ignore_errors=True)
    return backfill, day


def duckdb_struct(columns):
    """A DuckDB struct literal: {'name': 'TYPE', ...}."""
    return "{" + ", ".join("'%s': '%s'" % (k, v) for k, v in columns.items()) + "}"


def run_duckdb(path, out):
    script = (f"import duckdb; duckdb.sql(\"\"\"COPY (SELECT {DUCKDB_SELECT} FROM read_json({path!r}, format='newline_delimited', "
              f"columns={duckdb_struct(DUCKDB_COLUMNS)})) TO {out!r} (HEADER, DELIMITER ',')\"\"\")")
    result = measure([sys.executable, "-c", script])
    size = os.path.getsize(out)
    os.remove(out)
    return result, size


def run_jq(path, out):
    with open(out, "wb") as f:
        result = measure(["jq", "-r", JQ_FILTER, path], stdout=f)
    size = os.path.getsize(out)
    os.remove(out)
    return result, size


def row(name, lines, nbytes, result, out_size):
    wall, rss, cpu = result
    return {"tool": name, "lines": lines, "seconds": wall, "records_per_s": lines / wall, "mb_per_s": nbytes / 1e6 / wall,
            "peak_rss_mb": rss / 1e6, "cpu_seconds": cpu, "cpu_per_wall": cpu / wall, "output_mb": out_size / 1e6}


def pipeline_stages():
    """The kinds of the benchmark pipeline's stages, in order."""
    with open(os.path.join(REPO, "bench/project/Pipelines/signup_bench.yml"), encoding="utf-8") as f:
        transform = f.read().split("transform:\n", 1)[1].split("load:\n", 1)[0]
    return re.findall(r"(?m)^  - kind: (\S+)", transform)


def stage_costs(a, data, folder, city):
    """`--stage-costs`: the select-only pipeline, each stage alone before the select, and all
    the stages, in turns; medians, and each stage's cost over the select-only run. (A stage's
    cost alone is not its share of the whole: the stages run on three threads that share two
    cores, and what the whole costs over the select-only run is the sum's CPU, not its wall.)"""
    sluice = os.path.abspath(a.sluice)
    stages = [s for s in pipeline_stages() if s != "select"]
    variants = [("select only", ["select"])] + [(f"+ {s}", [s, "select"]) for s in stages] + [("all", None)]
    results = {name: [] for name, _ in variants}
    for round_ in range(a.repeat):
        for name, kept in variants:
            print(f"running sluice, {name}" + (f" (round {round_ + 1} of {a.repeat})" if a.repeat > 1 else "") + " ...", flush=True)
            results[name].append(run_sluice(sluice, data, folder, city, stages=kept, sink=a.sink))
    print()
    print("| stages | wall s | CPU s | peak RSS MB | wall over select only | CPU over select only |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    base = None
    for name, _ in variants:
        (wall, rss, cpu), _ = median_run(results[name])
        if base is None:
            base = (wall, cpu)
            extra = ("–", "–")
        else:
            extra = (f"{wall - base[0]:+.2f}", f"{cpu - base[1]:+.2f}")
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {rss / 1e6:.0f} | {extra[0]} | {extra[1]} |")
    if a.repeat > 1:
        print()
        for name, runs in results.items():
            print(f"{name}: wall s " + ", ".join(f"{w:.2f}" for (w, _, _), _ in runs))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sluice", required=True, help="the sluice binary (release build)")
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--big", type=int, default=4_000_000, help="lines of the memory run (0: skip it)")
    ap.add_argument("--days", type=int, default=3,
                    help="days of the backfill run (sluice backfill over this many days of --lines each; 0 or 1: skip it)")
    ap.add_argument("--history", type=int, default=0,
                    help="days of history (a backfill of this many days of --lines each, then one more day's run "
                         "as a new process on their state: how a day's cost grows with the sink's history; 0: skip it)")
    ap.add_argument("--data", default=os.environ.get("SLUICE_BENCH_DATA", "/work/bench-data"),
                    help="scratch folder for generated files (outside the repository)")
    ap.add_argument("--city", default=os.environ.get("SLUICE_BENCH_CITY",
                                                     os.path.join(REPO, "../shared/data/geolite2-city-2019/GeoLite2-City.mmdb")))
    ap.add_argument("--only", choices=["sluice", "duckdb", "jq"], action="append", help="run only these tools (repeatable)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--stages", help="sluice with only these of the pipeline's stages, comma-separated "
                    "(geoip,asn,error_code,rate_limit,email_domain,select; default: all)")
    ap.add_argument("--sink", choices=["csv", "warehouse", "bigquery"], default="csv",
                    help="sluice's sink: the CSV file (default), the local warehouse (SQLite), or BigQuery (the emulator, "
                         "started for each run; its ~1,800 rows/s are the run's wall time: use --lines 100000)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="the 1M-line runs of sluice (and --baseline) and DuckDB made this many times, in turns; "
                         "each tool's median run is reported (jq runs once)")
    ap.add_argument("--baseline", help="another sluice binary (before a change), run in the same turns as --sluice; "
                                       "its CSV must be the same bytes")
    ap.add_argument("--stage-costs", action="store_true",
                    help="instead of the comparison: what each stage costs sluice. The pipeline with no stage but its "
                         "trailing select, then with each one stage added, then with all, in turns (--repeat rounds); "
                         "each variant's median wall and CPU time, and each stage's over the select-only run")
    ap.add_argument("--asn-ranges", type=int, default=0,
                    help="the asn stage's table widened to this many ranges (a real iptoasn.com table has ~500,000; "
                         "default: the generated ~22,000)")
    a = ap.parse_args()
    stages = a.stages.split(",") if a.stages else None
    city = os.path.abspath(a.city)
    if not os.path.exists(city):
        sys.exit(f"benchmark: no City database at {city} (set SLUICE_BENCH_CITY)")
    data = os.path.abspath(a.data)
    os.makedirs(data, exist_ok=True)
    tools = a.only or ["sluice", "duckdb", "jq"]

    folder, path, _ = ensure_input(data, a.lines, city)
    global ASN_TABLE
    ASN_TABLE = ensure_asn(data, a.asn_ranges)
    if a.asn_ranges:
        print(f"IP-to-ASN table: {a.asn_ranges:,} ranges ({ASN_TABLE})", flush=True)
    nbytes = os.path.getsize(path)
    print(f"input: {a.lines:,} lines, {nbytes / 1e6:.0f} MB ({path}); {os.cpu_count()} cores", flush=True)
    if a.stage_costs:
        stage_costs(a, data, folder, city)
        return
    rows = []
    # The 1M-line runs, in turns: each round runs every tool once (jq in the first only).
    if a.repeat < 1:
        sys.exit("benchmark: --repeat must be 1 or more")
    runners = []
    for tool in tools:
        if tool == "sluice":
            runners.append(("sluice", lambda digest: run_sluice(os.path.abspath(a.sluice), data, folder, city, stages=stages,
                                                               sink=a.sink, digest=digest)))
            if a.baseline:
                runners.append(("sluice (baseline)", lambda digest: run_sluice(os.path.abspath(a.baseline), data, folder, city,
                                                                              stages=stages, sink=a.sink, digest=digest)))
        elif tool == "duckdb":
            runners.append(("duckdb", lambda digest: run_duckdb(path, os.path.join(data, "duckdb.csv"))))
        else:
            runners.append(("jq", lambda digest: run_jq(path, os.path.join(data, "jq.csv"))))
    results = {name: [] for name, _ in runners}
    digests = {name: [] for name, _ in runners}
    for round_ in range(a.repeat):
        for name, run in runners:
            if name == "jq" and round_ > 0:
                continue
            print(f"running {name}" + (f" (round {round_ + 1} of {a.repeat})" if a.repeat > 1 else "") + " ...", flush=True)
            results[name].append(run(digests[name]))
    for name, _ in runners:
        rows.append(row(name, a.lines, nbytes, *median_run(results[name])))
    if a.baseline and "sluice" in tools and set(digests["sluice"] + digests["sluice (baseline)"]) != {digests["sluice"][0]}:
        sys.exit("benchmark: --sluice and --baseline wrote different output")
    if a.big and "sluice" in tools:
        bfolder, bpath, _ = ensure_input(data, a.big, city)
        bbytes = os.path.getsize(bpath)
        print(f"running sluice on {a.big:,} lines ({bbytes / 1e6:.0f} MB) ...", flush=True)
        result, size = run_sluice(os.path.abspath(a.sluice), data, bfolder, city, stages=stages, sink=a.sink)
        rows.append(row("sluice", a.big, bbytes, result, size))
    backfill = None
    if a.days > 1 and "sluice" in tools:
        dates = [ensure_day(data, a.lines, city, d) for d in range(a.days)]
        print(f"running sluice backfill over {a.days} days of {a.lines:,} lines ({dates[0]} to {dates[-1]}) ...", flush=True)
        result, size = run_sluice(os.path.abspath(a.sluice), data, folder, city, until=dates[-1], stages=stages, sink=a.sink)
        backfill = row(f"sluice backfill, {a.days} days", a.lines * a.days, days_bytes(data, a.lines, dates), result, size)
        rows.append(backfill)
    history = None
    if a.history > 0 and "sluice" in tools:
        dates = [ensure_day(data, a.lines, city, d) for d in range(a.history + 1)]
        print(f"running sluice backfill over {a.history} days of {a.lines:,} lines ({dates[0]} to {dates[-2]}), "
              f"then sluice run of {dates[-1]} on their state ...", flush=True)
        (bresult, bsize), (dresult, dsize) = run_history(os.path.abspath(a.sluice), data, folder, city, dates)
        rows.append(row(f"sluice backfill, {a.history} days of history", a.lines * a.history,
                        days_bytes(data, a.lines, dates[:-1]), bresult, bsize))
        history = row(f"sluice, a day on {a.history} days of history", a.lines, days_bytes(data, a.lines, dates[-1:]), dresult, dsize)
        rows.append(history)

    print()
    print("| tool | lines | wall s | records/s | MB/s | peak RSS MB | CPU s | CPU/wall | output MB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['tool']} | {r['lines']:,} | {r['seconds']:.1f} | {r['records_per_s']:,.0f} | {r['mb_per_s']:.1f} | "
              f"{r['peak_rss_mb']:.0f} | {r['cpu_seconds']:.1f} | {r['cpu_per_wall']:.2f} | {r['output_mb']:.0f} |")
    by = {r["tool"]: r for r in rows if r["lines"] == a.lines}
    print()
    if a.repeat > 1:
        for name, runs in results.items():
            if len(runs) > 1:
                walls = ", ".join(f"{w:.2f}" for (w, _, _), _ in runs)
                cpus = ", ".join(f"{c:.1f}" for (_, _, c), _ in runs)
                print(f"{name}, {len(runs)} runs in turns: wall s {walls}; CPU s {cpus} (the table: the median run)")
    if "sluice" in by and "sluice (baseline)" in by:
        print(f"sluice / baseline: {by['sluice (baseline)']['seconds'] / by['sluice']['seconds']:.3f} "
              f"(the baseline's median time over sluice's; the same output)")
    if "sluice" in by and "duckdb" in by:
        print(f"sluice / DuckDB: {by['duckdb']['seconds'] / by['sluice']['seconds']:.2f} (DuckDB's time over sluice's; target >= 1.0)")
    if "sluice" in by and "jq" in by:
        print(f"sluice / jq: {by['jq']['seconds'] / by['sluice']['seconds']:.1f} (target >= 10)")
    small = by.get("sluice")
    big = next((r for r in rows if r["tool"] == "sluice" and r["lines"] == a.big and a.big != a.lines), None)
    if small:
        print(f"sluice peak RSS: {small['peak_rss_mb']:.0f} MB at {a.lines:,} lines (target < 100 MB)")
    if small and big:
        growth = (big["peak_rss_mb"] / small["peak_rss_mb"] - 1) * 100
        print(f"sluice peak RSS: {big['peak_rss_mb']:.0f} MB at {a.big:,} lines, {growth:+.1f}% (target within 10%)")
    if small and backfill:
        growth = (backfill["peak_rss_mb"] / small["peak_rss_mb"] - 1) * 100
        print(f"sluice peak RSS: {backfill['peak_rss_mb']:.0f} MB in a backfill of {a.days} days of {a.lines:,} lines, "
              f"{growth:+.1f}% over one day")
    if small and history:
        print(f"sluice, a day on {a.history} days of history: {history['seconds']:.1f} s against {small['seconds']:.1f} s "
              f"for a first day ({history['seconds'] / small['seconds']:.2f}x), peak RSS {history['peak_rss_mb']:.0f} MB")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
