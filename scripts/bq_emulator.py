#!/usr/bin/env python3
"""Starts the BigQuery emulator (PyPI `bqemulator`) for sluice's tests.

bqemulator insists on DuckDB's `spatial` extension, which cannot be downloaded here:
this wrapper makes that load best-effort (GEOGRAPHY is then unsupported) and skips the
optional `avro` extension download, then runs `bqemulator start` with the arguments given,
e.g. `bq_emulator.py --rest-port 9050 --grpc-port 0 --data-dir /tmp/bq --project p`.
"""
import sys

from bqemulator.storage import engine


def _best_effort(original):
    def load(self):
        try:
            original(self)
        except Exception as exc:  # noqa: BLE001 - the emulator runs without GEOGRAPHY
            print(f"bq_emulator: spatial extension unavailable ({type(exc).__name__}); GEOGRAPHY unsupported",
                  file=sys.stderr)
    return load


engine.DuckDBEngine._load_spatial = _best_effort(engine.DuckDBEngine._load_spatial)
engine.DuckDBEngine._load_format_extensions = lambda self: None

if __name__ == "__main__":
    from bqemulator.cli import main
    sys.exit(main(["start", *sys.argv[1:]], standalone_mode=True))
