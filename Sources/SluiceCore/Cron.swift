// Cron expressions: parsing and next-fire-time calculation, in UTC, without Foundation.

/// A problem in a cron expression: which field (if any) and why.
public struct CronError: Error, Sendable, Hashable, CustomStringConvertible {
    /// `minute`, `hour`, `day-of-month`, `month` or `day-of-week`; nil for problems with
    /// the expression as a whole (field count, unknown macro).
    public let field: String?
    public let message: String

    public init(field: String?, message: String) {
        self.field = field
        self.message = message
    }

    public var description: String {
        if let field { return "\(field): \(message)" }
        return message
    }
}

/// A classic 5-field cron expression (minute hour day-of-month month day-of-week)
/// evaluated in UTC, with the semantics of Vixie cron:
///
/// - `*`, lists `a,b`, ranges `a-b`, steps `*/n`, `a-b/n` and `a/n` (from `a` to the
///   field's maximum), month names `jan`…`dec` and weekday names `sun`…`sat`
///   (case-insensitive, also in ranges), day-of-week 0-7 with both 0 and 7 Sunday;
/// - the day rule: when both day fields are restricted (neither starts with `*`), a day
///   matches if either field matches; otherwise both must match (so `*/2` counts as
///   unrestricted, as in Vixie cron);
/// - the macros `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`,
///   `@hourly`.
///
/// Fire times are at second 0 of the minute. Equality and hashing compare what the
/// expression matches, not its spelling: `@daily == "0 0 * * *"`.
public struct CronExpression: Sendable, Hashable, CustomStringConvertible {
    /// The expression as written, with surrounding whitespace removed.
    public let description: String
    let minutes: UInt64    // bits 0...59
    let hours: UInt32      // bits 0...23
    let days: UInt32       // bits 1...31
    let months: UInt16     // bits 1...12
    let weekdays: UInt8    // bits 0...6, Sunday = 0
    /// Both day fields restricted: a day matches if either does (else both must).
    let dayOr: Bool

    /// How far `next(after:)` looks ahead before answering nil: ten years of days. The
    /// longest gap between two fires of a satisfiable expression is eight years (Feb 29
    /// around a non-leap century year, e.g. 2096 → 2104).
    public static let horizonDays: Int64 = 3_653

    static let allDays: UInt32 = 0xFFFF_FFFE     // 1...31
    static let allWeekdays: UInt8 = 0x7F        // 0...6
    static let minuteMicros: Int64 = 60_000_000
    static let dayMicros: Int64 = 86_400_000_000
    /// Supported instants: 0001-01-01T00:00 ..< 10000-01-01T00:00 UTC.
    static let minMicros: Int64 = -719_162 * dayMicros
    static let endMicros: Int64 = 2_932_897 * dayMicros

    static let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    static let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
    static let macros: [String: String] = [
        "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
        "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
    ]

    public init(_ text: String) throws(CronError) {
        var fields = Self.words(text)
        description = fields.joined(separator: " ")
        if let first = fields.first, first.hasPrefix("@") {
            guard let expanded = Self.macros[first.lowercased()] else {
                throw CronError(field: nil, message: "unknown macro `\(first)`; expected one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly")
            }
            guard fields.count == 1 else {
                throw CronError(field: nil, message: "macro `\(first)` takes no other fields, found \(fields.count - 1) more")
            }
            fields = Self.words(expanded)
        }
        guard fields.count == 5 else {
            throw CronError(field: nil, message: "expected 5 fields (minute hour day-of-month month day-of-week) or a macro such as @daily, found \(fields.count)")
        }
        minutes = try Self.parse(fields[0], field: "minute", range: 0...59, names: [])
        hours = UInt32(truncatingIfNeeded: try Self.parse(fields[1], field: "hour", range: 0...23, names: []))
        let days = UInt32(truncatingIfNeeded: try Self.parse(fields[2], field: "day-of-month", range: 1...31, names: []))
        months = UInt16(truncatingIfNeeded: try Self.parse(fields[3], field: "month", range: 1...12, names: Self.monthNames))
        let dow = try Self.parse(fields[4], field: "day-of-week", range: 0...7, names: Self.dayNames)
        let weekdays = UInt8(truncatingIfNeeded: (dow | (dow >> 7)) & 0x7F)   // 7 is Sunday too
        let dayOr = !fields[2].hasPrefix("*") && !fields[4].hasPrefix("*")
        if dayOr, days == Self.allDays || weekdays == Self.allWeekdays {
            // "Either" with a full set matches every day: normalize so equal schedules compare equal.
            self.days = Self.allDays
            self.weekdays = Self.allWeekdays
            self.dayOr = false
        } else {
            self.days = days
            self.weekdays = weekdays
            self.dayOr = dayOr
        }
    }

    public static func == (a: CronExpression, b: CronExpression) -> Bool {
        a.minutes == b.minutes && a.hours == b.hours && a.days == b.days && a.months == b.months
            && a.weekdays == b.weekdays && a.dayOr == b.dayOr
    }

    public func hash(into h: inout Hasher) {
        h.combine(minutes)
        h.combine(hours)
        h.combine(days)
        h.combine(months)
        h.combine(weekdays)
        h.combine(dayOr)
    }

    // MARK: Next fire time

    /// The first fire time strictly after `micros` (microseconds since the Unix epoch,
    /// UTC), or nil if there is none within `horizonDays` (about ten years) or before
    /// the year 10000. Walks day by day only through months the expression allows and
    /// jumps straight to the first allowed hour and minute of a matching day, so even
    /// `0 0 29 2 *` or an impossible `0 0 30 2 *` costs a few hundred cheap steps.
    public func next(after micros: Int64) -> Int64? {
        guard micros < Self.endMicros else { return nil }
        // The first whole minute strictly after `micros` (floor division for negatives).
        let start = Swift.max(micros, Self.minMicros - 1)
        let minute = (start >= 0 ? start / Self.minuteMicros : (start + 1) / Self.minuteMicros - 1) + 1
        var epochDay = minute >= 0 ? minute / 1440 : (minute + 1) / 1440 - 1
        let minuteOfDay = Int(minute - epochDay * 1440)
        var fromHour = minuteOfDay / 60
        var fromMinute = minuteOfDay % 60
        let lastDay = epochDay + Self.horizonDays
        var date = CivilDate(epochDay: epochDay)

        while epochDay <= lastDay {
            if months & (1 << date.month) == 0 {
                // Skip the rest of this month.
                let remaining = CivilDate.daysIn(month: date.month, year: date.year) - date.day + 1
                epochDay += Int64(remaining)
                date = CivilDate(epochDay: epochDay)
                fromHour = 0
                fromMinute = 0
                continue
            }
            if matchesDay(date, epochDay: epochDay), let (h, m) = firstTime(fromHour: fromHour, fromMinute: fromMinute) {
                let result = (epochDay * 1440 + Int64(h * 60 + m)) * Self.minuteMicros
                return result < Self.endMicros ? result : nil
            }
            epochDay += 1
            date = CivilDate(epochDay: epochDay)
            fromHour = 0
            fromMinute = 0
        }
        return nil
    }

    /// All fire times in `(from, to]`, in order, at most `limit`.
    public func fireTimes(after from: Int64, upTo to: Int64, limit: Int) -> [Int64] {
        var result: [Int64] = []
        var t = from
        while result.count < limit, t < to, let n = next(after: t), n <= to {
            result.append(n)
            t = n
        }
        return result
    }

    /// Whether the expression fires at the minute containing `micros`.
    public func matches(_ micros: Int64) -> Bool {
        guard micros >= Self.minMicros, micros < Self.endMicros else { return false }
        let minute = micros >= 0 ? micros / Self.minuteMicros : (micros + 1) / Self.minuteMicros - 1
        let epochDay = minute >= 0 ? minute / 1440 : (minute + 1) / 1440 - 1
        let minuteOfDay = Int(minute - epochDay * 1440)
        let date = CivilDate(epochDay: epochDay)
        return months & (1 << date.month) != 0 && matchesDay(date, epochDay: epochDay)
            && hours & (1 << (minuteOfDay / 60)) != 0 && minutes & (1 << (minuteOfDay % 60)) != 0
    }

    /// The day rule of Vixie cron: OR when both day fields are restricted, else AND.
    func matchesDay(_ date: CivilDate, epochDay: Int64) -> Bool {
        let weekday = Int(((epochDay % 7) + 11) % 7)   // 1970-01-01 was a Thursday (4)
        let domOK = days & (1 << date.day) != 0
        let dowOK = weekdays & (1 << weekday) != 0
        return dayOr ? (domOK || dowOK) : (domOK && dowOK)
    }

    /// The first (hour, minute) of the expression at or after `fromHour:fromMinute`.
    func firstTime(fromHour: Int, fromMinute: Int) -> (Int, Int)? {
        guard let h = Self.firstBit(UInt64(hours), from: fromHour) else { return nil }
        if h == fromHour, let m = Self.firstBit(minutes, from: fromMinute) { return (h, m) }
        guard let h2 = Self.firstBit(UInt64(hours), from: fromHour + 1),
              let m = Self.firstBit(minutes, from: 0) else { return nil }
        return (h2, m)
    }

    @inline(__always)
    static func firstBit(_ set: UInt64, from bit: Int) -> Int? {
        guard bit < 64 else { return nil }
        let rest = set & (~0 << UInt64(bit))
        return rest == 0 ? nil : rest.trailingZeroBitCount
    }

    // MARK: Parsing

    static func words(_ text: String) -> [String] {
        text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }).map(String.init)
    }

    /// One field → a bit set over `range`.
    static func parse(_ text: String, field: String, range: ClosedRange<Int>, names: [String]) throws(CronError) -> UInt64 {
        var bits: UInt64 = 0
        func fail(_ message: String) -> CronError { CronError(field: field, message: message) }

        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard !item.isEmpty else { throw fail("empty list item in `\(text)`") }
            var base = item
            var step = 1
            var hasStep = false
            if let slash = item.firstIndex(of: "/") {
                base = item[..<slash]
                let stepText = item[item.index(after: slash)...]
                guard let n = number(stepText) else {
                    throw fail("step `\(stepText)` in `\(item)` is not a number")
                }
                guard n >= 1, n <= range.upperBound else {
                    throw fail("step \(stepText) in `\(item)` must be between 1 and \(range.upperBound)")
                }
                step = n
                hasStep = true
            }
            var low: Int
            var high: Int
            if base == "*" {
                low = range.lowerBound
                high = range.upperBound
            } else {
                guard !base.isEmpty else { throw fail("missing value before the step in `\(item)`") }
                let bounds = base.split(separator: "-", omittingEmptySubsequences: false)
                guard bounds.count <= 2 else { throw fail("`\(item)` has more than one `-`") }
                low = try value(bounds[0], item: item, range: range, names: names, field: field)
                if bounds.count == 2 {
                    high = try value(bounds[1], item: item, range: range, names: names, field: field)
                    guard low <= high else {
                        var hint = ""
                        if names == dayNames, high == 0 { hint = "; for a range ending on Sunday write \(bounds[0])-7" }
                        throw fail("reversed range `\(base)` (\(low) > \(high))\(hint)")
                    }
                } else {
                    high = hasStep ? range.upperBound : low   // `a/n`: from a to the maximum
                }
            }
            var v = low
            while v <= high {
                bits |= 1 << UInt64(v)
                v += step
            }
        }
        return bits
    }

    static func value(_ text: Substring, item: Substring, range: ClosedRange<Int>, names: [String], field: String) throws(CronError) -> Int {
        if text.isEmpty { throw CronError(field: field, message: "missing number in range `\(item)`") }
        if let n = number(text) {
            guard range.contains(n) else {
                throw CronError(field: field, message: "\(text) is out of \(range.lowerBound)-\(range.upperBound)")
            }
            return n
        }
        if let i = names.firstIndex(of: text.lowercased()) {
            return names == monthNames ? i + 1 : i
        }
        if names.isEmpty {
            throw CronError(field: field, message: "`\(text)` is not a number")
        }
        let expected = names == monthNames ? "jan-dec" : "sun-sat"
        throw CronError(field: field, message: "unknown name `\(text)` (expected a number or \(expected))")
    }

    /// Decimal digits only (no sign), capped so that huge numbers report as out of range.
    static func number(_ text: Substring) -> Int? {
        guard !text.isEmpty else { return nil }
        var n = 0
        for c in text.utf8 {
            guard c >= 0x30, c <= 0x39 else { return nil }
            n = Swift.min(n * 10 + Int(c - 0x30), 1_000_000)
        }
        return n
    }
}
