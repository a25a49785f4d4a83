"""A small MaxMind DB (.mmdb) writer for the samples, written from the format's
specification (MaxMind DB 2.0), independently of sluice's reader.

    write_mmdb(path, networks, database_type, description)

`networks` is a list of (cidr, data) with data made of dicts, lists, str, int (>= 0),
float and bool. The tree is an IPv6 tree (ip_version 6, 24-bit records) with IPv4
networks at ::/96 as the specification prescribes, so that IPv4 lookups work in it.
Python standard library only.
"""
import ipaddress
import struct

_METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"


def _control(type_number, size):
    """The control byte(s) of a field of this type and payload size."""
    extended = type_number > 7
    first_type = 0 if extended else type_number
    if size < 29:
        head, extra = size, b""
    elif size < 29 + 256:
        head, extra = 29, bytes([size - 29])
    elif size < 285 + 65536:
        head, extra = 30, struct.pack(">H", size - 285)
    else:
        head, extra = 31, struct.pack(">I", size - 65821)[1:]
    out = bytes([(first_type << 5) | head])
    if extended:
        out += bytes([type_number - 7])
    return out + extra


def _uint(value, type_number):
    payload = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return _control(type_number, len(payload)) + payload


def encode(value):
    """One value in the data section's encoding (no pointers: the samples are small)."""
    if isinstance(value, bool):
        return _control(14, 1 if value else 0)
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return _control(2, len(raw)) + raw
    if isinstance(value, float):
        return _control(3, 8) + struct.pack(">d", value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError("negative integers are not used by the samples")
        if value < 1 << 32:
            return _uint(value, 6)  # uint32
        return _uint(value, 9)  # uint64
    if isinstance(value, dict):
        out = _control(7, len(value))
        for k, v in value.items():
            out += encode(str(k)) + encode(v)
        return out
    if isinstance(value, (list, tuple)):
        out = _control(11, len(value))
        for v in value:
            out += encode(v)
        return out
    raise TypeError(type(value).__name__)


def _encode_uint16(value):
    return _control(5, 2) + struct.pack(">H", value)


def _bits(cidr):
    net = ipaddress.ip_network(cidr, strict=True)
    if net.version == 4:
        return [0] * 96 + [(int(net.network_address) >> (31 - i)) & 1 for i in range(net.prefixlen)]
    return [(int(net.network_address) >> (127 - i)) & 1 for i in range(net.prefixlen)]


def write_mmdb(path, networks, database_type, description, languages=("en",), build_epoch=1763337600):
    # Data section: one encoded record per network, in order.
    data = b""
    offsets = []
    for _, value in networks:
        offsets.append(len(data))
        data += encode(value)
    # The search tree: nodes of [left, right]; an entry is None (no data), ("node", i)
    # or ("data", offset). Longer prefixes are inserted after shorter ones.
    nodes = [[None, None]]
    order = sorted(range(len(networks)), key=lambda i: len(_bits(networks[i][0])))
    for i in order:
        bits = _bits(networks[i][0])
        node = 0
        for depth, bit in enumerate(bits):
            if depth == len(bits) - 1:
                if isinstance(nodes[node][bit], tuple) and nodes[node][bit][0] == "node":
                    raise ValueError("a shorter network inserted after a longer one: " + networks[i][0])
                nodes[node][bit] = ("data", offsets[i])
                break
            entry = nodes[node][bit]
            if entry is None or entry[0] == "data":
                # Split: both halves inherit the enclosing network's data.
                nodes.append([entry, entry])
                nodes[node][bit] = ("node", len(nodes) - 1)
            node = nodes[node][bit][1]
    count = len(nodes)

    def record(entry):
        if entry is None:
            return count
        if entry[0] == "node":
            return entry[1]
        return count + 16 + entry[1]

    tree = b""
    for left, right in nodes:
        l, r = record(left), record(right)
        if max(l, r) >= 1 << 24:
            raise ValueError("too large for 24-bit records")
        tree += l.to_bytes(3, "big") + r.to_bytes(3, "big")

    metadata = _control(7, 9)
    for key, encoded in [
        ("binary_format_major_version", _encode_uint16(2)),
        ("binary_format_minor_version", _encode_uint16(0)),
        ("build_epoch", _uint(build_epoch, 9)),
        ("database_type", encode(database_type)),
        ("description", encode({"en": description})),
        ("ip_version", _encode_uint16(6)),
        ("languages", encode(list(languages))),
        ("node_count", _uint(count, 6)),
        ("record_size", _encode_uint16(24)),
    ]:
        metadata += encode(key) + encoded
    with open(path, "wb") as f:
        f.write(tree + b"\x00" * 16 + data + _METADATA_MARKER + metadata)
