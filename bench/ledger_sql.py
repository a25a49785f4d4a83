"""The delivery ledger's inserts alone, as the state store issues them (WAL, synchronous
FULL, 4 MiB page cache, 16 KiB pages; each commit's keys sorted, 500 per statement), in three schemas:

  text   the ledger before v8 (pipeline, sink, 32-char hex key, partition as text)
  noseg  v8 without the segment column in the partition index: ledger_by_partition(partition_id)
  seg    v8 as it is: ledger_by_partition(partition_id, segment)
  levels tried, not kept: primary key (sink_id, level, key); each commit's keys go to
         level 0, and a level past its capacity (LEVEL0_KEYS at level 0, RATIO times more
         each level down) is moved into the next one, sorted, 100k keys a transaction
  runs   ledger_recent as append-only runs, one per commit: primary key (sink_id, run, key)
         (each commit's keys go to the end of the sink's range), merged into ledger like
         `recent`
  recent v10 as it is: each commit's keys go to ledger_recent (the same columns, with
         the partition index; ledger has none since v10, LEDGER_INDEX=1 gives it one);
         past LEVEL0_KEYS (default 2^20) it is merged into ledger in one sorted
         INSERT ... SELECT and emptied with one DELETE, in one transaction

    python3 bench/ledger_sql.py VARIANT KEYS KEYS_PER_COMMIT [PAGE_SIZE [LEVEL0_KEYS RATIO]]   # e.g. seg 4000000 100000
    python3 bench/ledger_sql.py recent 13000000 100000    # v10 against seg: the last 10 commits are a day on 12M keys

PAGE_SIZE: of the new file, 16384 by default (the store's since `5e8b267`; 4096 before).

Prints the CPU seconds of the commits (in total and per quarter of them: the growth with
the ledger's size) and the tables' sizes (dbstat). Keys: SHA-256 prefixes, like sluice's."""
import os, sqlite3, sys, time, hashlib, resource
variant, total, seg = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
page_size = int(sys.argv[4]) if len(sys.argv) > 4 else 16384
path = f"/tmp/ledger-sim-{variant}.sqlite"
for suffix in ("", "-wal", "-shm"):
    try: os.remove(path + suffix)
    except FileNotFoundError: pass
c = sqlite3.connect(path, isolation_level=None)
c.execute(f"PRAGMA page_size = {page_size}"); c.execute("PRAGMA journal_mode = WAL"); c.execute("PRAGMA synchronous = FULL"); c.execute("PRAGMA cache_size = -4096")
if variant == "text":
    c.execute("CREATE TABLE ledger (pipeline TEXT NOT NULL, sink TEXT NOT NULL, record_key TEXT NOT NULL, partition TEXT NOT NULL, PRIMARY KEY (pipeline, sink, record_key)) WITHOUT ROWID")
    c.execute("CREATE INDEX ledger_by_partition ON ledger(pipeline, partition)")
elif variant == "runs":
    c.execute("CREATE TABLE ledger (sink_id INTEGER NOT NULL, key BLOB NOT NULL, partition_id INTEGER NOT NULL, segment INTEGER NOT NULL, PRIMARY KEY (sink_id, key)) WITHOUT ROWID")
    c.execute("CREATE TABLE ledger_recent (sink_id INTEGER NOT NULL, run INTEGER NOT NULL, key BLOB NOT NULL, partition_id INTEGER NOT NULL, segment INTEGER NOT NULL, PRIMARY KEY (sink_id, run, key)) WITHOUT ROWID")
    c.execute("CREATE INDEX ledger_recent_by_partition ON ledger_recent(partition_id, segment)")
    c.execute("CREATE TABLE ledger_recent_runs (sink_id INTEGER NOT NULL, run INTEGER NOT NULL, keys INTEGER NOT NULL, PRIMARY KEY (sink_id, run))")
elif variant == "recent":
    for t in ("ledger", "ledger_recent"):
        c.execute(f"CREATE TABLE {t} (sink_id INTEGER NOT NULL, key BLOB NOT NULL, partition_id INTEGER NOT NULL, segment INTEGER NOT NULL, PRIMARY KEY (sink_id, key)) WITHOUT ROWID")
        if t == "ledger_recent" or os.environ.get("LEDGER_INDEX"):  # v10 has none on ledger (LEDGER_INDEX=1: the first try)
            c.execute(f"CREATE INDEX {t}_by_partition ON {t}(partition_id, segment)")
elif variant == "levels":
    c.execute("CREATE TABLE ledger (sink_id INTEGER NOT NULL, level INTEGER NOT NULL, key BLOB NOT NULL, partition_id INTEGER NOT NULL, segment INTEGER NOT NULL, PRIMARY KEY (sink_id, level, key)) WITHOUT ROWID")
    c.execute("CREATE INDEX ledger_by_partition ON ledger(partition_id, segment)")
else:
    c.execute("CREATE TABLE ledger (sink_id INTEGER NOT NULL, key BLOB NOT NULL, partition_id INTEGER NOT NULL, segment INTEGER NOT NULL, PRIMARY KEY (sink_id, key)) WITHOUT ROWID")
    c.execute("CREATE INDEX ledger_by_partition ON ledger(partition_id" + (", segment)" if variant == "seg" else ")"))
n = 0; k = 0
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime
level0 = int(sys.argv[5]) if len(sys.argv) > 5 else 1 << 20
ratio = int(sys.argv[6]) if len(sys.argv) > 6 else 8
counts = {}
def merge_recent():
    """ledger_recent into ledger past level0 keys: one statement in key order, then emptied."""
    if counts.get(0, 0) <= level0: return
    c.execute("BEGIN IMMEDIATE")
    if variant == "runs":
        c.execute("INSERT OR IGNORE INTO ledger SELECT sink_id, key, partition_id, segment FROM ledger_recent ORDER BY sink_id, key")
        c.execute("DELETE FROM ledger_recent_runs")
    else:
        c.execute("INSERT OR IGNORE INTO ledger SELECT * FROM ledger_recent ORDER BY sink_id, key")
    c.execute("DELETE FROM ledger_recent")
    c.execute("COMMIT")
    counts[0] = 0
def merge():
    """Each level past its capacity goes into the next one, 100k keys a transaction."""
    level = 0
    while counts.get(level, 0) > level0 * ratio ** level:
        while counts.get(level, 0) > 0:
            c.execute("BEGIN IMMEDIATE")
            rows = c.execute("SELECT key, partition_id, segment FROM ledger WHERE sink_id = 1 AND level = ? ORDER BY key LIMIT 100000", (level,)).fetchall()
            c.executemany("INSERT OR IGNORE INTO ledger (sink_id, level, key, partition_id, segment) VALUES (1, ?, ?, ?, ?)", [(level + 1,) + r for r in rows])
            c.execute("DELETE FROM ledger WHERE sink_id = 1 AND level = ? AND key <= ?", (level, rows[-1][0]))
            c.execute("COMMIT")
            counts[level] -= len(rows); counts[level + 1] = counts.get(level + 1, 0) + len(rows)
        level += 1
report = []; walls = []
lookups = float(os.environ.get("LOOKUPS", "0"))
t0 = cpu()
while n < total:
    keys = sorted(hashlib.sha256(str(i).encode()).hexdigest()[:32] for i in range(n, n + seg))
    n += seg; k += 1
    start = cpu(); wall = time.monotonic()
    c.execute("BEGIN IMMEDIATE")
    # LOOKUPS=f: a fraction f of the commit's keys (the Bloom filter's false positives)
    # looked up in ledger_recent first, 500 a statement, as the store asks them.
    probe = [bytes.fromhex(x) for x in keys[::int(1 / lookups)]] if lookups else []
    for i in range(0, len(probe), 500):
        chunk = probe[i:i + 500]
        if variant == "runs":
            c.execute("SELECT key, partition_id FROM ledger_recent WHERE sink_id = 1 AND run IN (SELECT run FROM ledger_recent_runs WHERE sink_id = 1) AND key IN (%s)" % ",".join("?" * len(chunk)), chunk).fetchall()
        elif variant == "recent":
            c.execute("SELECT key, partition_id FROM ledger_recent WHERE sink_id = 1 AND key IN (%s)" % ",".join("?" * len(chunk)), chunk).fetchall()
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        if variant == "runs":
            c.execute("INSERT OR IGNORE INTO ledger_recent (sink_id, run, key, partition_id, segment) VALUES " + ",".join(["(1, %d, ?, 1, %d)" % (k, k)] * len(chunk)), [bytes.fromhex(x) for x in chunk])
        elif variant == "recent":
            c.execute("INSERT OR IGNORE INTO ledger_recent (sink_id, key, partition_id, segment) VALUES " + ",".join(["(1, ?, 1, %d)" % k] * len(chunk)), [bytes.fromhex(x) for x in chunk])
        elif variant == "levels":
            c.execute("INSERT OR IGNORE INTO ledger (sink_id, level, key, partition_id, segment) VALUES " + ",".join(["(1, 0, ?, 1, %d)" % k] * len(chunk)), [bytes.fromhex(x) for x in chunk])
        elif variant == "text":
            c.execute("INSERT OR IGNORE INTO ledger (pipeline, sink, record_key, partition) VALUES " + ",".join(["('signup_bench', 'csv signup_attempts', ?, '2026-11-18')"] * len(chunk)), chunk)
        else:
            c.execute("INSERT OR IGNORE INTO ledger (sink_id, key, partition_id, segment) VALUES " + ",".join(["(1, ?, 1, %d)" % k] * len(chunk)), [bytes.fromhex(x) for x in chunk])
    if variant == "runs":
        c.execute("INSERT INTO ledger_recent_runs VALUES (1, ?, ?)", (k, len(keys)))
    c.execute("COMMIT")
    walls.append(time.monotonic() - wall)
    if variant == "levels":
        counts[0] = counts.get(0, 0) + len(keys); merge()
    elif variant in ("recent", "runs"):
        counts[0] = counts.get(0, 0) + len(keys); merge_recent()
    report.append(cpu() - start)
sizes = dict(c.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
print(variant, "keys", total, "per commit", seg, "commit CPU s total %.1f" % sum(report),
      "by quarter", ["%.1f" % sum(report[i * len(report) // 4:(i + 1) * len(report) // 4]) for i in range(4)],
      "last 10 commits %.1f" % sum(report[-10:]), "wall s of the commits %.2f" % sum(walls), "each", ["%.0f" % (w * 1000) for w in walls], "cpu each", ["%.0f" % (w * 1000) for w in report], "commits with a merge", ["%d: %.1f" % (i, r) for i, r in enumerate(report) if r > 3 * min(report)],
      "MB", {a: round(b / 1e6, 1) for a, b in sizes.items()})
