/// A problem in a cron expression: which field and why.
public struct CronError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// A classic 5-field cron expression (minute hour day-of-month month day-of-week), in
/// UTC, with the semantics of Vixie cron: `*`, lists, ranges, steps (`*/n`, `a-b/n`,
/// `a/n`), month and weekday names, Sunday as 0 or 7, the macros `@hourly` … `@yearly`,
/// and the day rule: when both day fields are restricted, a day matches if either does.
public struct CronExpression: Sendable, Hashable, CustomStringConvertible {
    public let description: String
    let minutes: UInt64
    let hours: UInt32
    let days: UInt32      // bits 1...31
    let months: UInt16    // bits 1...12
    let weekdays: UInt8   // bits 0...6, Sunday = 0
    let daysRestricted: Bool
    let weekdaysRestricted: Bool

    static let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    static let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
    static let macros = ["@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                         "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"]

    public init(_ text: String) throws(CronError) {
        description = text
        let trimmed = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        var fields = trimmed
        if trimmed.count == 1, let expanded = Self.macros[trimmed[0].lowercased()] {
            fields = expanded.split(separator: " ").map(String.init)
        }
        guard fields.count == 5 else {
            throw CronError(message: "expected 5 fields (minute hour day-of-month month day-of-week), found \(fields.count)")
        }
        minutes = try Self.parse(fields[0], name: "minute", range: 0...59, names: [])
        hours = UInt32(try Self.parse(fields[1], name: "hour", range: 0...23, names: []))
        days = UInt32(try Self.parse(fields[2], name: "day-of-month", range: 1...31, names: []))
        months = UInt16(try Self.parse(fields[3], name: "month", range: 1...12, names: Self.monthNames))
        var dow = try Self.parse(fields[4], name: "day-of-week", range: 0...7, names: Self.dayNames)
        if dow & (1 << 7) != 0 { dow = (dow | 1) & ~(1 << 7) }
        weekdays = UInt8(dow)
        daysRestricted = !fields[2].hasPrefix("*")
        weekdaysRestricted = !fields[4].hasPrefix("*")
    }

    static func parse(_ field: String, name: String, range: ClosedRange<Int>, names: [String]) throws(CronError) -> UInt64 {
        var bits: UInt64 = 0
        for item in field.split(separator: ",", omittingEmptySubsequences: false) {
            guard !item.isEmpty else { throw CronError(message: "\(name): empty list item in `\(field)`") }
            var base = Substring(item)
            var step = 1
            if let slash = item.firstIndex(of: "/") {
                base = item[..<slash]
                guard let s = Int(item[item.index(after: slash)...]), s > 0 else {
                    throw CronError(message: "\(name): invalid step in `\(item)`")
                }
                step = s
            }
            var lo = range.lowerBound, hi = range.upperBound
            if base != "*" {
                let bounds = base.split(separator: "-", omittingEmptySubsequences: false)
                guard bounds.count <= 2 else { throw CronError(message: "\(name): invalid range `\(base)`") }
                lo = try value(bounds[0], name: name, range: range, names: names)
                if bounds.count == 2 {
                    hi = try value(bounds[1], name: name, range: range, names: names)
                    guard hi >= lo else { throw CronError(message: "\(name): reversed range `\(base)`") }
                } else if item.contains("/") {
                    hi = range.upperBound  // `a/n`: from a to the maximum
                } else {
                    hi = lo
                }
            }
            var v = lo
            while v <= hi {
                bits |= 1 << UInt64(v)
                v += step
            }
        }
        return bits
    }

    static func value(_ text: Substring, name: String, range: ClosedRange<Int>, names: [String]) throws(CronError) -> Int {
        if let n = Int(text) {
            guard range.contains(n) else { throw CronError(message: "\(name): \(n) is out of \(range.lowerBound)-\(range.upperBound)") }
            return n
        }
        if let i = names.firstIndex(of: text.lowercased()) { return range.lowerBound == 0 ? i : i + 1 }
        throw CronError(message: "\(name): `\(text)` is not a number" + (names.isEmpty ? "" : " or a name"))
    }

    func dayMatches(_ date: CivilDate) -> Bool {
        let dom = days & (1 << UInt32(date.day)) != 0
        let weekday = Int((date.epochDay % 7 + 7 + 4) % 7)  // 1970-01-01 was a Thursday
        let dow = weekdays & (1 << UInt8(weekday)) != 0
        if daysRestricted && weekdaysRestricted { return dom || dow }
        if daysRestricted { return dom }
        if weekdaysRestricted { return dow }
        return true
    }

    /// The first fire time strictly after `micros` (microseconds since the epoch, UTC), or
    /// nil if there is none within about five years.
    public func next(after micros: Int64) -> Int64? {
        let minute: Int64 = 60_000_000, hour = 60 * minute, day = 24 * hour
        // The next whole minute.
        var t = (micros >= 0 ? micros / minute : (micros - minute + 1) / minute) * minute + minute
        let limit = t + 5 * 366 * day
        while t < limit {
            let epochDay = t >= 0 ? t / day : (t - day + 1) / day
            let date = CivilDate(epochDay: epochDay)
            if months & (1 << UInt16(date.month)) == 0 {
                // First day of the next month.
                let y = date.month == 12 ? date.year + 1 : date.year
                let m = date.month == 12 ? 1 : date.month + 1
                guard let first = CivilDate(year: y, month: m, day: 1) else { return nil }
                t = first.epochDay * day
                continue
            }
            if !dayMatches(date) {
                t = (epochDay + 1) * day
                continue
            }
            let inDay = t - epochDay * day
            let h = Int(inDay / hour)
            if hours & (1 << UInt32(h)) == 0 {
                t = epochDay * day + Int64(h + 1) * hour
                continue
            }
            let m = Int((inDay - Int64(h) * hour) / minute)
            if minutes & (1 << UInt64(m)) == 0 {
                t += minute
                continue
            }
            return t
        }
        return nil
    }

    /// The fire times in (from, to], at most `limit` of them (the latest ones are dropped).
    public func fireTimes(after from: Int64, upTo to: Int64, limit: Int) -> [Int64] {
        var out: [Int64] = []
        var t = from
        while out.count < limit, let n = next(after: t), n <= to {
            out.append(n)
            t = n
        }
        return out
    }
}
