import Foundation
import SluiceMaxMind
import Testing

@Suite struct IPAddressTests {
    /// Text -> the 4 or 16 bytes, written out by hand.
    static let valid: [(String, String)] = [
        ("0.0.0.0", "00000000"),
        ("1.2.3.4", "01020304"),
        ("255.255.255.255", "ffffffff"),
        ("10.0.0.10", "0a00000a"),
        ("::", "00000000000000000000000000000000"),
        ("::1", "00000000000000000000000000000001"),
        ("1::", "00010000000000000000000000000000"),
        ("2001:db8::8a2e:370:7334", "20010db80000000000008a2e03707334"),
        ("2001:0db8:0000:0000:0000:8a2e:0370:7334", "20010db80000000000008a2e03707334"),
        ("2001:DB8::A", "20010db800000000000000000000000a"),
        ("1:2:3:4:5:6:7:8", "00010002000300040005000600070008"),
        ("1:2:3:4:5:6:7::", "00010002000300040005000600070000"),
        ("::2:3:4:5:6:7:8", "00000002000300040005000600070008"),
        ("1::8", "00010000000000000000000000000008"),
        ("::ffff:1.2.3.4", "00000000000000000000ffff01020304"),
        ("::1.2.3.4", "00000000000000000000000001020304"),
        ("64:ff9b::192.0.2.33", "0064ff9b0000000000000000c0000221"),
        ("1:2:3:4:5:6:1.2.3.4", "00010002000300040005000601020304"),
        ("1::5:6:1.2.3.4", "00010000000000000005000601020304"),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffffffffffffffffffffffffffffffff"),
        ("0:0:0:0:0:0:0:0", "00000000000000000000000000000000"),
    ]

    static let invalid = [
        "", " ", "1.2.3", "1.2.3.4.5", "1.2.3.256", "01.2.3.4", "1.2.3.04", "1..2.3", ".1.2.3", "1.2.3.4.",
        "1.2.3.-4", "1.2.3.4 ", " 1.2.3.4", "a.b.c.d", "1:2:3:4:5:6:7:8:9", "1::2::3", ":::", ":1::", "1::2:",
        "1:2:3:4:5:6:7", "12345::", "g::", "::ffff:1.2.3", "::ffff:1.2.3.256", "1.2.3.4::", "::1.2.3.4:5",
        "1:2:3:4:5:6:7:1.2.3.4", "1::2:3:4:5:6:7:8", "fe80::1%eth0", "[::1]", "::1/128", "1.2.3.4/32",
        "::ffff:01.2.3.4", ":", "1:", "1:2:3:4:5:6:7:8:", "::1:2:3:4:5:6:7:8",
    ]

    static func hex(_ a: IPAddress) -> String { a.bytes.map { String(format: "%02x", $0) }.joined() }

    @Test(arguments: valid)
    func parsesValid(text: String, bytes: String) throws {
        let a = try #require(IPAddress(text), "\(text) rejected")
        #expect(Self.hex(a) == bytes, "\(text)")
        #expect(a.family == (bytes.count == 8 ? .v4 : .v6))
        // The canonical text reads back to the same address.
        #expect(IPAddress(a.description) == a, "\(text) -> \(a.description)")
    }

    @Test(arguments: invalid)
    func rejectsInvalid(text: String) {
        #expect(IPAddress(text) == nil, "\(text) accepted")
    }

    /// Python's ipaddress module agrees on every string of both tables and on random
    /// addresses in many spellings.
    @Test func agreesWithPythonIPAddress() throws {
        var texts = Self.valid.map(\.0) + Self.invalid.filter { !$0.contains("%") && $0.trimmingCharacters(in: .whitespaces) == $0 }
        var rng = XorShift(seed: 7)
        for _ in 0..<300 {
            let v6 = IPAddress(v6High: rng.next() & (rng.next() | 0xFFFF_0000_FFFF_0000), low: rng.next() & rng.next())
            texts.append(v6.description)
            texts.append(Self.hex(v6).uppercased().enumerated().map { $0.offset > 0 && $0.offset % 4 == 0 ? ":\($0.element)" : "\($0.element)" }.joined())
            let v4 = IPAddress(v4: UInt32(truncatingIfNeeded: rng.next()))
            texts.append(v4.description)
            texts.append("::ffff:" + v4.description)
        }
        let answers = try Fixtures.reference(["parse"], input: texts.joined(separator: "\n") + "\n")
            .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for (text, answer) in zip(texts, answers) {
            let ours = IPAddress(text).map(Self.hex) ?? "invalid"
            #expect(ours == answer, "\(text)")
        }
    }

    @Test func descriptions() throws {
        #expect(IPAddress("2001:0db8:0:0:1:0:0:1")?.description == "2001:db8::1:0:0:1")
        #expect(IPAddress("2001:db8:0:1:1:1:1:1")?.description == "2001:db8:0:1:1:1:1:1")
        #expect(IPAddress("0:0:0:0:0:0:0:0")?.description == "::")
        #expect(IPAddress("::FFFF:10.1.2.3")?.description == "::ffff:10.1.2.3")
        #expect(IPAddress("1.2.3.4")?.ipv4Mapped == nil)
        #expect(IPAddress("::ffff:1.2.3.4")?.ipv4Mapped == IPAddress("1.2.3.4"))
        #expect(IPAddress("::ffff:1.2.3.4") != IPAddress("1.2.3.4"))
    }

    @Test func networks() throws {
        let a = try addr("192.168.77.200")
        #expect(a.masked(to: 20) == IPAddress("192.168.64.0"))
        #expect(a.lastAddress(prefixLength: 20) == IPAddress("192.168.79.255"))
        #expect(a.masked(to: 0) == IPAddress("0.0.0.0") && a.lastAddress(prefixLength: 32) == a)
        let b = try addr("2001:db8:1234:5678:9abc:def0:1234:5678")
        #expect(b.masked(to: 48) == IPAddress("2001:db8:1234::"))
        #expect(b.masked(to: 96) == IPAddress("2001:db8:1234:5678:9abc:def0::"))
        #expect(b.lastAddress(prefixLength: 64) == IPAddress("2001:db8:1234:5678:ffff:ffff:ffff:ffff"))
        #expect(b.lastAddress(prefixLength: 0) == IPAddress("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))
        #expect(b.masked(to: 128) == b)
    }
}
