#!/usr/bin/env python3
"""Starts the BigQuery emulator (PyPI `bqemulator`) for sluice's tests.

bqemulator insists on DuckDB's `spatial` extension, which cannot be downloaded here:
this wrapper loads it only if it is installed already (GEOGRAPHY is unsupported
otherwise), skips the optional `avro` extension, and stops DuckDB from downloading any
extension it would load on first use, then runs `bqemulator start` with the arguments
given, e.g. `bq_emulator.py --rest-port 9050 --grpc-port 0 --data-dir /tmp/bq --project p`.

No download is tried at all: each try resolves extensions.duckdb.org, and with no
network that failed quickly most of the time but sometimes hung on the resolver, and an
emulator then answered nothing for over a minute (a test failed; its process answered
later).
"""
import sys

from bqemulator.storage import engine


def _load_spatial_offline(self):
    self._connection.execute("SET autoinstall_known_extensions = false")
    try:
        self._connection.execute("LOAD spatial")
    except Exception as exc:  # noqa: BLE001 - the emulator runs without GEOGRAPHY
        print(f"bq_emulator: spatial extension not installed ({type(exc).__name__}); GEOGRAPHY unsupported",
              file=sys.stderr)


engine.DuckDBEngine._load_spatial = _load_spatial_offline
engine.DuckDBEngine._load_format_extensions = lambda self: None

if __name__ == "__main__":
    from bqemulator.cli import main
    sys.exit(main(["start", *sys.argv[1:]], standalone_mode=True))
