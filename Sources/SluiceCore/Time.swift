/// A calendar date in the proleptic Gregorian calendar, without Foundation.
public struct CivilDate: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let year: Int
    public let month: Int
    public let day: Int

    public init?(year: Int, month: Int, day: Int) {
        guard (1...9999).contains(year), (1...12).contains(month),
              day >= 1, day <= CivilDate.daysIn(month: month, year: year) else { return nil }
        self.year = year
        self.month = month
        self.day = day
    }

    /// Parses exactly `YYYY-MM-DD`.
    public init?<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        guard let date = bytes.withContiguousStorageIfAvailable({ CivilDate(utf8: $0) }) ?? Array(bytes).withUnsafeBufferPointer({ CivilDate(utf8: $0) })
        else { return nil }
        self = date
    }

    public init?(_ text: String) {
        var text = text
        guard let date = text.withUTF8({ CivilDate(utf8: $0) }) else { return nil }
        self = date
    }

    /// Parses exactly `YYYY-MM-DD` (no copy of the bytes: this is on every record's path).
    init?(utf8 b: UnsafeBufferPointer<UInt8>) {
        guard b.count == 10, b[4] == 0x2D, b[7] == 0x2D,
              let y = digits(b, 0, 4), let m = digits(b, 5, 2), let d = digits(b, 8, 2) else { return nil }
        self.init(year: y, month: m, day: d)
    }

    /// From days since 1970-01-01 (H. Hinnant's civil_from_days).
    public init(epochDay: Int64) {
        let z = epochDay + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        year = Int(yoe + era * 400 + (m <= 2 ? 1 : 0))
        month = Int(m)
        day = Int(d)
    }

    /// Days since 1970-01-01 (H. Hinnant's days_from_civil).
    public var epochDay: Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = Int64(month > 2 ? month - 3 : month + 9)
        let doy = (153 * mp + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    public func adding(days: Int) -> CivilDate { CivilDate(epochDay: epochDay + Int64(days)) }

    public var description: String {
        guard (1...9999).contains(year) else { return pad(year, 4) + "-" + pad(month, 2) + "-" + pad(day, 2) }
        return String(unsafeUninitializedCapacity: 10) { out in
            write(into: out.baseAddress!)
            return 10
        }
    }

    /// Writes `YYYY-MM-DD` (10 bytes) of a date in years 1-9999.
    func write(into p: UnsafeMutablePointer<UInt8>) {
        writeDigits(year, 4, p)
        p[4] = UInt8(ascii: "-")
        writeDigits(month, 2, p + 5)
        p[7] = UInt8(ascii: "-")
        writeDigits(day, 2, p + 8)
    }

    public static func < (a: CivilDate, b: CivilDate) -> Bool { a.epochDay < b.epochDay }

    public static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}

@inline(__always)
func digits(_ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ count: Int) -> Int? {
    guard start + count <= b.count else { return nil }
    var v = 0
    for i in start..<(start + count) {
        let c = b[i]
        guard c >= 0x30, c <= 0x39 else { return nil }
        v = v * 10 + Int(c - 0x30)
    }
    return v
}

/// Writes `v` (not negative) as `width` decimal digits, zero-padded, at `p`.
@inline(__always) func writeDigits(_ v: Int, _ width: Int, _ p: UnsafeMutablePointer<UInt8>) {
    var v = v
    for k in stride(from: width - 1, through: 0, by: -1) {
        p[k] = UInt8(truncatingIfNeeded: 0x30 + v % 10)
        v /= 10
    }
}

func pad(_ v: Int, _ width: Int) -> String {
    let s = String(v)
    return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
}

/// Timestamps as microseconds since the Unix epoch, UTC: BigQuery's TIMESTAMP precision.
public enum Timestamp {
    public static let minMicros: Int64 = CivilDate(year: 1, month: 1, day: 1)!.epochDay * 86_400_000_000
    public static let maxMicros: Int64 = (CivilDate(year: 9999, month: 12, day: 31)!.epochDay + 1) * 86_400_000_000 - 1

    /// Parses the forms BigQuery accepts for a TIMESTAMP: `YYYY-MM-DD[( |T)HH:MM[:SS[.F]]][zone]`
    /// where zone is `Z`, `z`, ` UTC`, `±HH`, `±HHMM` or `±HH:MM`; no zone means UTC.
    /// Fractions beyond microseconds are truncated, as BigQuery does.
    public static func parse(_ text: String) -> Int64? {
        var text = text
        return text.withUTF8 { b in
            // Trailing " UTC" / "UTC".
            if b.count > 3, b[b.count - 3] == 0x55, b[b.count - 2] == 0x54, b[b.count - 1] == 0x43 {
                var n = b.count - 3
                if n > 0, b[n - 1] == 0x20 { n -= 1 }
                return parseBytes(UnsafeBufferPointer(rebasing: b[..<n]), requireNoZone: true)
            }
            return parseBytes(b, requireNoZone: false)
        }
    }

    /// Parses a civil date-time without a zone (BigQuery DATETIME): micros since epoch as if UTC.
    public static func parseDateTime(_ text: String) -> Int64? {
        var text = text
        return text.withUTF8 { parseBytes($0, requireNoZone: true) }
    }

    /// The bytes are the string's own (no copy: event times are parsed on every record's path).
    private static func parseBytes(_ b: UnsafeBufferPointer<UInt8>, requireNoZone: Bool) -> Int64? {
        guard b.count >= 10, let date = CivilDate(utf8: UnsafeBufferPointer(rebasing: b[0..<10])) else { return nil }
        var micros = date.epochDay * 86_400_000_000
        var i = 10
        if i == b.count { return micros }
        guard b[i] == UInt8(ascii: "T") || b[i] == UInt8(ascii: "t") || b[i] == 0x20 else { return nil }
        i += 1
        guard let time = parseTime(b, &i) else { return nil }
        micros += time
        if i < b.count {
            if requireNoZone { return nil }
            guard let offset = parseZone(b, &i), i == b.count else { return nil }
            micros -= offset
        }
        guard micros >= minMicros, micros <= maxMicros else { return nil }
        return micros
    }

    /// `HH:MM[:SS[.ffffff…]]` → micros since midnight; advances `i`.
    static func parseTime(_ b: UnsafeBufferPointer<UInt8>, _ i: inout Int) -> Int64? {
        guard let h = digits(b, i, 2), i + 2 < b.count, b[i + 2] == 0x3A, let m = digits(b, i + 3, 2),
              h < 24, m < 60 else { return nil }
        i += 5
        var s = 0
        var frac: Int64 = 0
        if i < b.count, b[i] == 0x3A {
            guard let sec = digits(b, i + 1, 2), sec < 60 else { return nil }
            s = sec
            i += 3
            if i < b.count, b[i] == 0x2E {
                i += 1
                var n = 0
                while i < b.count, b[i] >= 0x30, b[i] <= 0x39 {
                    if n < 6 { frac = frac * 10 + Int64(b[i] - 0x30) }
                    n += 1
                    i += 1
                }
                guard n > 0 else { return nil }
                for _ in n..<max(n, 6) { frac *= 10 }
            }
        }
        return (Int64(h) * 3600 + Int64(m) * 60 + Int64(s)) * 1_000_000 + frac
    }

    /// `Z`, `±HH`, `±HHMM`, `±HH:MM` → offset in micros; advances `i`.
    static func parseZone(_ b: UnsafeBufferPointer<UInt8>, _ i: inout Int) -> Int64? {
        if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") { i += 1; return 0 }
        guard b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") else { return nil }
        let sign: Int64 = b[i] == UInt8(ascii: "-") ? -1 : 1
        i += 1
        guard let h = digits(b, i, 2), h < 24 else { return nil }
        i += 2
        var m = 0
        if i < b.count {
            if b[i] == 0x3A { i += 1 }
            guard let mm = digits(b, i, 2), mm < 60 else { return nil }
            m = mm
            i += 2
        }
        return sign * (Int64(h) * 3600 + Int64(m) * 60) * 1_000_000
    }

    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    public static func format(_ micros: Int64) -> String {
        formatted(micros, zone: true)
    }

    /// `YYYY-MM-DDTHH:MM:SSZ` of whole seconds since the epoch (what Foundation's
    /// `ISO8601DateFormatter` writes by default), written here: that formatter builds an
    /// ICU calendar and date format, whose tables (~3.5 MB of `lib_FoundationICU.so`
    /// pages) then count in the process's resident memory for the rest of the run.
    public static func formatSeconds(_ seconds: Int64) -> String {
        // Years 1-9999 (a wall clock's); other times clamped to them.
        let micros = (minMicros / 1_000_000...maxMicros / 1_000_000).contains(seconds) ? seconds * 1_000_000 : seconds < 0 ? minMicros : maxMicros
        return String(unsafeUninitializedCapacity: 20) { out in
            let p = out.baseAddress!
            let (day, time) = dayAndTime(micros)
            CivilDate(epochDay: day).write(into: p)
            p[10] = UInt8(ascii: "T")
            let (h, m, s, _) = clock(time)
            writeDigits(h, 2, p + 11)
            p[13] = UInt8(ascii: ":")
            writeDigits(m, 2, p + 14)
            p[16] = UInt8(ascii: ":")
            writeDigits(s, 2, p + 17)
            p[19] = UInt8(ascii: "Z")
            return 20
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS.ffffff` (no zone).
    public static func formatCivil(_ micros: Int64) -> String {
        formatted(micros, zone: false)
    }

    /// `format(micros)`, but `text` itself when it is that very text already (a
    /// timestamp column of a log that writes the canonical form, the usual case): no new
    /// string for every record.
    public static func canonical(_ micros: Int64, of text: String) -> String {
        guard (minMicros...maxMicros).contains(micros) else { return format(micros) }
        var text = text
        let same = text.withUTF8 { b in
            b.count == 27 && withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 27) { out in
                write(micros, zone: true, into: out.baseAddress!)
                for k in 0..<27 where out[k] != b[k] { return false }
                return true
            }
        }
        return same ? text : format(micros)
    }

    /// The text of `micros`, written byte by byte into one string (a string of pieces
    /// was a dozen allocations, on every record of a TIMESTAMP column).
    private static func formatted(_ micros: Int64, zone: Bool) -> String {
        guard (minMicros...maxMicros).contains(micros) else { return formattedByParts(micros, zone: zone) }
        let count = zone ? 27 : 26
        return String(unsafeUninitializedCapacity: count) { out in
            write(micros, zone: zone, into: out.baseAddress!)
            return count
        }
    }

    /// Writes `YYYY-MM-DDTHH:MM:SS.ffffff` and, with `zone`, `Z` (26 or 27 bytes) of a time
    /// in years 1-9999.
    private static func write(_ micros: Int64, zone: Bool, into p: UnsafeMutablePointer<UInt8>) {
        let (day, time) = dayAndTime(micros)
        CivilDate(epochDay: day).write(into: p)
        p[10] = UInt8(ascii: "T")
        writeTime(time, p + 11)
        if zone { p[26] = UInt8(ascii: "Z") }
    }

    /// The day since the epoch of `micros` (rounded down, before 1970 too) and the micros
    /// since that day's midnight.
    static func dayAndTime(_ micros: Int64) -> (day: Int64, time: Int64) {
        let day = micros >= 0 ? micros / 86_400_000_000 : (micros + 1) / 86_400_000_000 - 1
        return (day, micros - day * 86_400_000_000)
    }

    /// Hours, minutes, seconds and microseconds of micros since midnight.
    private static func clock(_ micros: Int64) -> (h: Int, m: Int, s: Int, f: Int) {
        var rest = micros
        let h = rest / 3_600_000_000; rest -= h * 3_600_000_000
        let m = rest / 60_000_000; rest -= m * 60_000_000
        let s = rest / 1_000_000; rest -= s * 1_000_000
        return (Int(h), Int(m), Int(s), Int(rest))
    }

    /// `HH:MM:SS.ffffff` (15 bytes) of micros since midnight.
    private static func writeTime(_ micros: Int64, _ p: UnsafeMutablePointer<UInt8>) {
        let (h, m, s, f) = clock(micros)
        writeDigits(h, 2, p)
        p[2] = UInt8(ascii: ":")
        writeDigits(m, 2, p + 3)
        p[5] = UInt8(ascii: ":")
        writeDigits(s, 2, p + 6)
        p[8] = UInt8(ascii: ".")
        writeDigits(f, 6, p + 9)
    }

    /// Times outside years 1-9999 (no parser yields them; kept total for any caller).
    private static func formattedByParts(_ micros: Int64, zone: Bool) -> String {
        let (day, time) = dayAndTime(micros)
        return CivilDate(epochDay: day).description + "T" + formatTime(time) + (zone ? "Z" : "")
    }

    /// `HH:MM:SS.ffffff` of micros since midnight.
    public static func formatTime(_ micros: Int64) -> String {
        guard (0..<86_400_000_000).contains(micros) else {
            let (h, m, s, f) = clock(micros)
            return pad(h, 2) + ":" + pad(m, 2) + ":" + pad(s, 2) + "." + pad(f, 6)
        }
        return String(unsafeUninitializedCapacity: 15) { out in
            writeTime(micros, out.baseAddress!)
            return 15
        }
    }

    /// Parses `HH:MM[:SS[.f]]` (BigQuery TIME) to micros since midnight.
    public static func parseTimeOfDay(_ text: String) -> Int64? {
        var text = text
        return text.withUTF8 { b in
            var i = 0
            guard let t = parseTime(b, &i), i == b.count else { return nil }
            return t
        }
    }
}
