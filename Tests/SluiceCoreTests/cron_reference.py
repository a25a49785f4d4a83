#!/usr/bin/env python3
"""Reference fire times from croniter (an independent cron implementation).
stdin: one JSON request per line {"expr": ..., "start": epoch_seconds, "count": n};
stdout: one JSON list of epoch seconds per line."""
import datetime
import json
import sys

from croniter import croniter

for line in sys.stdin:
    req = json.loads(line)
    start = datetime.datetime.fromtimestamp(req["start"], tz=datetime.timezone.utc)
    it = croniter(req["expr"], start)
    print(json.dumps([int(it.get_next(datetime.datetime).timestamp()) for _ in range(req["count"])]))
