#!/usr/bin/env python3
"""Reference for truncated gzip input: the complete ("\\n"-terminated) lines that zlib
can decode from the first N bytes of a gzip file. Prints their count and the number of
bytes they span, as JSON."""
import json
import sys
import zlib

data = open(sys.argv[1], "rb").read()[: int(sys.argv[2])]
d = zlib.decompressobj(16 + zlib.MAX_WBITS)
try:
    out = d.decompress(data)
except zlib.error:
    out = b""
complete = out[: out.rfind(b"\n") + 1] if b"\n" in out else b""
print(json.dumps({"lines": complete.count(b"\n"), "bytes": len(complete)}))
