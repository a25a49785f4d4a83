#!/usr/bin/env python3
"""Where a process's resident memory is: runs a command, reads /proc/PID/smaps every
--every seconds and prints, for the sample with the largest total RSS and as the
largest of each part over the run, the resident MB by owner:

  anon      anonymous memory (malloc's heap and arenas, thread stacks, Swift metadata)
  mmdb      the mapped MaxMind databases (*.mmdb; file pages, also in the page cache)
  binary    the executable itself
  libs      shared libraries (*.so*)
  other     other mapped files (SQLite's -shm, locale archives, ...)

and the peak RSS the kernel reports (ru_maxrss, as bench/run.py does). Usage:

  bench/rss.py [--every 0.5] -- sluice run Pipelines/x.yml --date D --project P
"""
import argparse
import os
import subprocess
import sys
import time


def sample(pid, exe):
    parts = {"anon": 0, "mmdb": 0, "binary": 0, "libs": 0, "other": 0}
    name = None
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                first = line.split(None, 1)[0]
                if "-" in first and not first.endswith(":"):
                    fields = line.split(None, 5)
                    name = fields[5].strip() if len(fields) > 5 else ""
                elif first == "Rss:":
                    kb = int(line.split()[1])
                    if name == "" or name.startswith("["):
                        parts["anon"] += kb
                    elif name.endswith(".mmdb"):
                        parts["mmdb"] += kb
                    elif name == exe:
                        parts["binary"] += kb
                    elif ".so" in os.path.basename(name):
                        parts["libs"] += kb
                    else:
                        parts["other"] += kb
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return parts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--every", type=float, default=0.5, help="seconds between samples")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    argv = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not argv:
        ap.error("no command")
    start = time.monotonic()
    proc = subprocess.Popen(argv)
    exe = os.path.realpath(f"/proc/{proc.pid}/exe") if os.path.exists(f"/proc/{proc.pid}/exe") else None
    best, best_at, maxima = None, 0.0, {}
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        try:
            exe = os.path.realpath(f"/proc/{proc.pid}/exe")
        except OSError:
            pass
        s = sample(proc.pid, exe)
        if s:
            for k, v in s.items():
                maxima[k] = max(maxima.get(k, 0), v)
            if best is None or sum(s.values()) > sum(best.values()):
                best, best_at = s, time.monotonic() - start
        time.sleep(a.every)
    wall = time.monotonic() - start
    code = os.waitstatus_to_exitcode(status)
    mb = lambda kb: f"{kb / 1024:.1f}"
    print(f"exit {code}, wall {wall:.1f} s, CPU {ru.ru_utime + ru.ru_stime:.1f} s "
          f"(user {ru.ru_utime:.1f}, sys {ru.ru_stime:.1f}), ru_maxrss {ru.ru_maxrss / 1024:.1f} MiB", file=sys.stderr)
    if best:
        print(f"largest sample (at {best_at:.1f} s): total {mb(sum(best.values()))} MiB: "
              + ", ".join(f"{k} {mb(v)}" for k, v in best.items()), file=sys.stderr)
        print("largest of each part: " + ", ".join(f"{k} {mb(v)}" for k, v in maxima.items()), file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
