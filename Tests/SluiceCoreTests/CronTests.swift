import Foundation
import Testing
import SluiceCore
import SluiceTestSupport

// Cron expressions: parsing, errors, and next fire times against croniter.

/// Microseconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`, via Foundation's
/// calendar (independent of the code under test); the fraction is read by hand so
/// microseconds are exact.
func cronMicros(_ iso: String) -> Int64 {
    precondition(iso.hasSuffix("Z"), "expected a UTC time: \(iso)")
    let body = iso.dropLast()
    let parts = body.split(separator: ".", maxSplits: 1)
    let f = parts[0].split(whereSeparator: { "-T:".contains($0) }).map { Int($0)! }
    precondition(f.count == 6, "bad ISO-8601 time: \(iso)")
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone(identifier: "UTC")!
    let date = calendar.date(from: DateComponents(year: f[0], month: f[1], day: f[2], hour: f[3], minute: f[4], second: f[5]))!
    var fraction: Int64 = 0
    if parts.count == 2 {
        let digits = String(parts[1].prefix(6)).padding(toLength: 6, withPad: "0", startingAt: 0)
        fraction = Int64(digits)!
    }
    return Int64(date.timeIntervalSince1970.rounded()) * 1_000_000 + fraction
}

/// `YYYY-MM-DDTHH:MM:SSZ` of whole seconds, for readable failures.
func cronISO(_ micros: Int64?) -> String {
    guard let micros else { return "nil" }
    let formatter = ISO8601DateFormatter()
    formatter.timeZone = TimeZone(identifier: "UTC")!
    return formatter.string(from: Date(timeIntervalSince1970: Double(micros / 1_000_000)))
}

/// Expression, start, and the next fire times after the start.
/// Generated once by cron_reference.py (beside this file) with Python's croniter 7.0.0.
/// croniter's day rule differs from Vixie cron's (it ORs the day fields whenever both
/// are not the full set, even `*/2`); the script passes day_or=False whenever either
/// day field starts with `*`, which is the Vixie rule followed here (see `0 0 */2 * mon`).
let cronReferenceCases: [(String, String, [String])] = [
    ("*/5 * * * *", "2024-03-10T10:07:30Z", ["2024-03-10T10:10:00Z", "2024-03-10T10:15:00Z", "2024-03-10T10:20:00Z", "2024-03-10T10:25:00Z"]),
    ("15 * * * *", "2024-03-10T10:15:00Z", ["2024-03-10T11:15:00Z", "2024-03-10T12:15:00Z", "2024-03-10T13:15:00Z", "2024-03-10T14:15:00Z"]),
    ("0 9 * * mon-fri", "2024-03-08T08:00:00Z", ["2024-03-08T09:00:00Z", "2024-03-11T09:00:00Z", "2024-03-12T09:00:00Z", "2024-03-13T09:00:00Z"]),
    ("0 9 * * MON-FRI", "2024-03-08T09:00:00Z", ["2024-03-11T09:00:00Z", "2024-03-12T09:00:00Z", "2024-03-13T09:00:00Z", "2024-03-14T09:00:00Z"]),
    ("10-50/20 * * * *", "2024-03-10T10:45:00Z", ["2024-03-10T10:50:00Z", "2024-03-10T11:10:00Z", "2024-03-10T11:30:00Z", "2024-03-10T11:50:00Z"]),
    ("0 0 31 * *", "2024-01-31T00:00:00Z", ["2024-03-31T00:00:00Z", "2024-05-31T00:00:00Z", "2024-07-31T00:00:00Z", "2024-08-31T00:00:00Z"]),
    ("0 0 29 2 *", "2024-03-01T00:00:00Z", ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z", "2036-02-29T00:00:00Z", "2040-02-29T00:00:00Z"]),
    ("0 0 29 2 *", "2096-02-29T00:00:00Z", ["2104-02-29T00:00:00Z", "2108-02-29T00:00:00Z", "2112-02-29T00:00:00Z", "2116-02-29T00:00:00Z"]),
    ("0 0 13 * fri", "2024-09-01T00:00:00Z", ["2024-09-06T00:00:00Z", "2024-09-13T00:00:00Z", "2024-09-20T00:00:00Z", "2024-09-27T00:00:00Z"]),
    ("0 0 13 * 5", "2026-02-01T00:00:00Z", ["2026-02-06T00:00:00Z", "2026-02-13T00:00:00Z", "2026-02-20T00:00:00Z", "2026-02-27T00:00:00Z"]),
    ("30 4 1,15 * 5", "2024-02-01T00:00:00Z", ["2024-02-01T04:30:00Z", "2024-02-02T04:30:00Z", "2024-02-09T04:30:00Z", "2024-02-15T04:30:00Z"]),
    ("0 0 * * 7", "2024-03-05T12:00:00Z", ["2024-03-10T00:00:00Z", "2024-03-17T00:00:00Z", "2024-03-24T00:00:00Z", "2024-03-31T00:00:00Z"]),
    ("0 0 * * 0", "2024-03-05T12:00:00Z", ["2024-03-10T00:00:00Z", "2024-03-17T00:00:00Z", "2024-03-24T00:00:00Z", "2024-03-31T00:00:00Z"]),
    ("0 12 * * sun", "2024-03-05T12:00:00Z", ["2024-03-10T12:00:00Z", "2024-03-17T12:00:00Z", "2024-03-24T12:00:00Z", "2024-03-31T12:00:00Z"]),
    ("0 0 * * 5-7", "2024-03-05T00:00:00Z", ["2024-03-08T00:00:00Z", "2024-03-09T00:00:00Z", "2024-03-10T00:00:00Z", "2024-03-15T00:00:00Z"]),
    ("0 0 1 jan,jul *", "2024-02-15T00:00:00Z", ["2024-07-01T00:00:00Z", "2025-01-01T00:00:00Z", "2025-07-01T00:00:00Z", "2026-01-01T00:00:00Z"]),
    ("0 6 * jun-aug mon", "2024-05-01T00:00:00Z", ["2024-06-03T06:00:00Z", "2024-06-10T06:00:00Z", "2024-06-17T06:00:00Z", "2024-06-24T06:00:00Z"]),
    ("59 23 31 12 *", "2023-12-31T23:59:00Z", ["2024-12-31T23:59:00Z", "2025-12-31T23:59:00Z", "2026-12-31T23:59:00Z", "2027-12-31T23:59:00Z"]),
    ("0 0 1 1 *", "2024-12-31T23:59:59.999999Z", ["2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]),
    ("0 0 */2 * mon", "2024-01-01T00:00:00Z", ["2024-01-15T00:00:00Z", "2024-01-29T00:00:00Z", "2024-02-05T00:00:00Z", "2024-02-19T00:00:00Z"]),
    ("0 0 1-31/2 * mon", "2024-01-01T00:00:00Z", ["2024-01-03T00:00:00Z", "2024-01-05T00:00:00Z", "2024-01-07T00:00:00Z", "2024-01-08T00:00:00Z"]),
    ("0 0 1 * */3", "2024-01-01T00:00:00Z", ["2024-05-01T00:00:00Z", "2024-06-01T00:00:00Z", "2024-09-01T00:00:00Z", "2024-12-01T00:00:00Z"]),
    ("5/15 */6 * * *", "2024-03-10T05:05:00Z", ["2024-03-10T06:05:00Z", "2024-03-10T06:20:00Z", "2024-03-10T06:35:00Z", "2024-03-10T06:50:00Z"]),
    ("0 0-23/8 * * *", "2024-03-10T17:00:00Z", ["2024-03-11T00:00:00Z", "2024-03-11T08:00:00Z", "2024-03-11T16:00:00Z", "2024-03-12T00:00:00Z"]),
    ("0,30 9-17 * * 1-5", "2024-03-08T17:15:00Z", ["2024-03-08T17:30:00Z", "2024-03-11T09:00:00Z", "2024-03-11T09:30:00Z", "2024-03-11T10:00:00Z"]),
    ("0 0 28-31 * *", "2023-02-01T00:00:00Z", ["2023-02-28T00:00:00Z", "2023-03-28T00:00:00Z", "2023-03-29T00:00:00Z", "2023-03-30T00:00:00Z"]),
    ("0 0 1 */3 *", "2024-11-15T00:00:00Z", ["2025-01-01T00:00:00Z", "2025-04-01T00:00:00Z", "2025-07-01T00:00:00Z", "2025-10-01T00:00:00Z"]),
    ("23 0-20/2 * * *", "1969-12-31T21:00:00Z", ["1970-01-01T00:23:00Z", "1970-01-01T02:23:00Z", "1970-01-01T04:23:00Z", "1970-01-01T06:23:00Z"]),
    ("* * * * *", "2024-02-29T23:58:30.5Z", ["2024-02-29T23:59:00Z", "2024-03-01T00:00:00Z", "2024-03-01T00:01:00Z", "2024-03-01T00:02:00Z"]),
    ("0 0 29 2 mon", "2024-01-01T00:00:00Z", ["2024-02-05T00:00:00Z", "2024-02-12T00:00:00Z", "2024-02-19T00:00:00Z", "2024-02-26T00:00:00Z"]),
    ("@yearly", "2024-06-01T00:00:00Z", ["2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]),
    ("@annually", "2024-06-01T00:00:00Z", ["2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]),
    ("@monthly", "2024-12-15T00:00:00Z", ["2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z", "2025-03-01T00:00:00Z", "2025-04-01T00:00:00Z"]),
    ("@weekly", "2024-03-05T00:00:00Z", ["2024-03-10T00:00:00Z", "2024-03-17T00:00:00Z", "2024-03-24T00:00:00Z", "2024-03-31T00:00:00Z"]),
    ("@daily", "2024-12-31T00:00:00Z", ["2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z", "2025-01-03T00:00:00Z", "2025-01-04T00:00:00Z"]),
    ("@midnight", "2024-12-31T12:00:00Z", ["2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z", "2025-01-03T00:00:00Z", "2025-01-04T00:00:00Z"]),
    ("@hourly", "2024-12-31T22:30:00Z", ["2024-12-31T23:00:00Z", "2025-01-01T00:00:00Z", "2025-01-01T01:00:00Z", "2025-01-01T02:00:00Z"]),
]

@Test(arguments: cronReferenceCases)
func nextFireTimesMatchCroniter(_ expression: String, _ start: String, _ expected: [String]) throws {
    let cron = try CronExpression(expression)
    var t = cronMicros(start)
    var got: [String] = []
    for _ in expected {
        guard let n = cron.next(after: t) else { break }
        #expect(n > t)
        #expect(n % 60_000_000 == 0, "fires at second 0")
        #expect(cron.matches(n))
        got.append(cronISO(n))
        t = n
    }
    #expect(got == expected, "\(expression) after \(start)")
    // fireTimes over the same span gives the same list; `to` is inclusive.
    let all = cron.fireTimes(after: cronMicros(start), upTo: cronMicros(expected.last!), limit: 100)
    #expect(all.map { cronISO($0) } == expected)
    #expect(cron.fireTimes(after: cronMicros(start), upTo: cronMicros(expected.last!) - 1, limit: 100).count == expected.count - 1)
    #expect(cron.fireTimes(after: cronMicros(start), upTo: cronMicros(expected.last!), limit: 2).map { cronISO($0) } == Array(expected.prefix(2)))
}

/// Expression and a fragment of the expected error message.
let cronInvalidCases: [(String, String)] = [
    ("", "expected 5 fields (minute hour day-of-month month day-of-week) or a macro such as @daily, found 0"),
    ("* * * *", "found 4"),
    ("* * * * * *", "found 6"),
    ("0 0 * * * echo hi", "found 7"),
    ("60 * * * *", "minute: 60 is out of 0-59"),
    ("0-60 * * * *", "minute: 60 is out of 0-59"),
    ("99999999999999999999 * * * *", "minute: 99999999999999999999 is out of 0-59"),
    ("* 24 * * *", "hour: 24 is out of 0-23"),
    ("* * 0 * *", "day-of-month: 0 is out of 1-31"),
    ("* * 1-32 * *", "day-of-month: 32 is out of 1-31"),
    ("* * * 0 *", "month: 0 is out of 1-12"),
    ("* * * 13 *", "month: 13 is out of 1-12"),
    ("* * * * 8", "day-of-week: 8 is out of 0-7"),
    ("*/0 * * * *", "minute: step 0 in `*/0` must be between 1 and 59"),
    ("*/60 * * * *", "minute: step 60 in `*/60` must be between 1 and 59"),
    ("* * * * 1-5/0", "day-of-week: step 0 in `1-5/0` must be between 1 and 7"),
    ("1-5/ * * * *", "minute: step `` in `1-5/` is not a number"),
    ("*/x * * * *", "minute: step `x` in `*/x` is not a number"),
    ("/5 * * * *", "minute: missing value before the step in `/5`"),
    ("5-1 * * * *", "minute: reversed range `5-1` (5 > 1)"),
    ("* * * dec-jan *", "month: reversed range `dec-jan` (12 > 1)"),
    ("* * * * fri-mon", "day-of-week: reversed range `fri-mon` (5 > 1)"),
    ("* * * * mon-sun", "day-of-week: reversed range `mon-sun` (1 > 0); for a range ending on Sunday write mon-7"),
    ("* * * foo *", "month: unknown name `foo` (expected a number or jan-dec)"),
    ("* * * january *", "month: unknown name `january`"),
    ("* * * * funday", "day-of-week: unknown name `funday` (expected a number or sun-sat)"),
    ("* * * * jan", "day-of-week: unknown name `jan`"),
    ("* * mon * *", "day-of-month: `mon` is not a number"),
    ("1,,2 * * * *", "minute: empty list item in `1,,2`"),
    ("1, * * * *", "minute: empty list item in `1,`"),
    (",1 * * * *", "minute: empty list item in `,1`"),
    ("-5 * * * *", "minute: missing number in range `-5`"),
    ("5- * * * *", "minute: missing number in range `5-`"),
    ("1-2-3 * * * *", "minute: `1-2-3` has more than one `-`"),
    ("*-5 * * * *", "minute: `*` is not a number"),
    ("+5 * * * *", "minute: `+5` is not a number"),
    ("@reboot", "unknown macro `@reboot`"),
    ("@fortnightly", "unknown macro `@fortnightly`"),
    ("@daily 5", "macro `@daily` takes no other fields, found 1 more"),
]

@Test(arguments: cronInvalidCases)
func invalidExpressionsAreRejected(_ expression: String, _ fragment: String) {
    do {
        let cron = try CronExpression(expression)
        Issue.record("accepted `\(expression)` as \(cron)")
    } catch {
        #expect(error.description.contains(fragment), "`\(expression)`: \(error.description)")
    }
}

@Test func errorsNameTheField() {
    #expect(throws: CronError(field: "hour", message: "24 is out of 0-23")) { try CronExpression("0 24 * * *") }
    // The form `sluice validate` prints after "invalid schedule `…`: ".
    #expect(CronError(field: "minute", message: "61 is out of 0-59").description == "minute: 61 is out of 0-59")
    #expect(throws: CronError(field: nil, message: "unknown macro `@reboot`; expected one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly")) {
        try CronExpression("@reboot")
    }
}

@Test func spellingsOfTheSameScheduleAreEqual() throws {
    let pairs: [(String, String)] = [
        ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"), ("@hourly", "0 * * * *"),
        ("@weekly", "0 0 * * 0"), ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"), ("@annually", "0 0 1 jan *"),
        ("@DAILY", "0 0 * * *"),
        ("0 0 * * 7", "0 0 * * sun"), ("0 0 * * 0,7", "0 0 * * SUN"), ("0 0 * * 5-7", "0 0 * * fri,sat,sun"),
        ("0 0 * * 1/2", "0 0 * * mon,wed,fri,sun"),   // Vixie: `a/n` runs to 7 (croniter stops at 6)
        ("0 0 * * */2", "0 0 * * 0,2,4,6"), ("0 0 * * sun-sat", "0 0 * * *"),
        ("0 0 1-31 * mon", "0 0 * * *"),              // every day OR Monday = every day
        ("0 0 13 * 0-7", "@daily"),
        ("*/15 * * * *", "0,15,30,45 * * * *"), ("0/15 * * * *", "0-59/15 * * * *"),
        ("10-50/20 * * * *", "10,30,50 * * * *"), ("5/20 * * * *", "5,25,45 * * * *"),
        ("0 0 1 jan-mar *", "0 0 1 1,2,3 *"), ("0 0 1 */3 *", "0 0 1 jan,apr,jul,oct *"),
        ("00 09 * * MON-fri", "0 9 * * 1-5"), ("0\t0  *   * *", "0 0 * * *"),
    ]
    for (a, b) in pairs {
        let x = try CronExpression(a), y = try CronExpression(b)
        #expect(x == y, "\(a) vs \(b)")
        #expect(x.hashValue == y.hashValue)
    }
    #expect(try CronExpression("0 0 1 * *") != CronExpression("0 0 2 * *"))
    // Same day sets, different day rule: `*/1` is unrestricted (AND: Mondays), `1-31`
    // restricted (OR: every day).
    #expect(try CronExpression("0 0 */1 * mon") != CronExpression("0 0 1-31 * mon"))
    #expect(try CronExpression("0 0 */1 * mon") == CronExpression("0 0 * * 1"))
    #expect(Set([try CronExpression("@daily"), try CronExpression("0 0 * * *"), try CronExpression("@hourly")]).count == 2)
    #expect(try CronExpression("  0  9 * *\tmon-fri ").description == "0 9 * * mon-fri")
    #expect(try CronExpression("@weekly").description == "@weekly")
}

/// Vixie-cron behaviour checked by hand where croniter differs or has no answer.
@Test func vixieSpecifics() throws {
    // Day-of-week `1/2` = mon, wed, fri, sun (croniter: mon, wed, fri).
    let odd = try CronExpression("0 0 * * 1/2")
    #expect(odd.fireTimes(after: cronMicros("2024-03-03T00:00:00Z"), upTo: cronMicros("2024-03-10T00:00:00Z"), limit: 10).map { cronISO($0) }
        == ["2024-03-04T00:00:00Z", "2024-03-06T00:00:00Z", "2024-03-08T00:00:00Z", "2024-03-10T00:00:00Z"])
    // Day-of-month restricted, day-of-week `*/2` (unrestricted): AND, the 1st when it is sun/tue/thu/sat.
    let first = try CronExpression("0 0 1 * */2")
    #expect(first.fireTimes(after: cronMicros("2024-01-01T00:00:00Z"), upTo: cronMicros("2024-12-31T00:00:00Z"), limit: 10).map { cronISO($0) }
        == ["2024-02-01T00:00:00Z", "2024-06-01T00:00:00Z", "2024-08-01T00:00:00Z", "2024-09-01T00:00:00Z", "2024-10-01T00:00:00Z",
           "2024-12-01T00:00:00Z"])
    // Impossible dates never fire (croniter raises instead).
    for text in ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 2 *"] {
        #expect(try CronExpression(text).next(after: 0) == nil, "\(text)")
    }
    // ...unless the day-of-week OR rule lets them.
    #expect(cronISO(try CronExpression("0 0 30 2 mon").next(after: cronMicros("2024-01-01T00:00:00Z"))) == "2024-02-05T00:00:00Z")
}

@Test func boundaries() throws {
    let minutely = try CronExpression("* * * * *")
    // Strictly after: a start on a fire time moves on; any fraction of a minute rounds up.
    #expect(minutely.next(after: 0) == 60_000_000)
    #expect(minutely.next(after: 1) == 60_000_000)
    #expect(minutely.next(after: 59_999_999) == 60_000_000)
    #expect(minutely.next(after: -1) == 0)
    #expect(minutely.next(after: -60_000_000) == 0)
    #expect(minutely.next(after: -60_000_001) == -60_000_000)
    // fireTimes: empty for an empty span or a limit of 0.
    #expect(minutely.fireTimes(after: 0, upTo: 0, limit: 10).isEmpty)
    #expect(minutely.fireTimes(after: 0, upTo: -5, limit: 10).isEmpty)
    #expect(minutely.fireTimes(after: 0, upTo: 600_000_000, limit: 0).isEmpty)
    #expect(minutely.fireTimes(after: 0, upTo: 600_000_000, limit: 100).count == 10)
    // The supported range ends at 10000-01-01.
    let yearly = try CronExpression("@yearly")
    #expect(cronISO(yearly.next(after: cronMicros("9998-06-01T00:00:00Z"))) == "9999-01-01T00:00:00Z")
    #expect(yearly.next(after: cronMicros("9999-06-01T00:00:00Z")) == nil)
    #expect(minutely.next(after: .max) == nil)
    // 0001-01-01T00:00:00Z, proleptic Gregorian (Foundation's calendars switch to Julian before 1582).
    #expect(yearly.next(after: .min) == -62_135_596_800_000_000)
    // Feb 29 across 2100 (an eight-year gap) is within the horizon.
    #expect(cronISO(try CronExpression("0 0 29 2 *").next(after: cronMicros("2096-03-01T00:00:00Z"))) == "2104-02-29T00:00:00Z")
}


/// `next` agrees with a minute-by-minute scan using `matches` on random expressions.
@Test func nextAgreesWithAMinuteByMinuteScan() throws {
    var rng = SplitMix64(seed: 42)
    func field(_ range: ClosedRange<Int>, star: Int) -> String {
        switch Int.random(in: 0..<6, using: &rng) {
        case 0: return "*"
        case 1: return "*/\(Int.random(in: 1...max(1, star), using: &rng))"
        case 2: return String(Int.random(in: range, using: &rng))
        case 3:
            let a = Int.random(in: range, using: &rng), b = Int.random(in: a...range.upperBound, using: &rng)
            return "\(a)-\(b)"
        case 4:
            return "\(Int.random(in: range, using: &rng)),\(Int.random(in: range, using: &rng))"
        default:
            let a = Int.random(in: range, using: &rng)
            return "\(a)/\(Int.random(in: 1...max(1, star), using: &rng))"
        }
    }
    for _ in 0..<150 {
        let text = [field(0...59, star: 20), field(0...23, star: 6), field(1...31, star: 10), field(1...12, star: 4), field(0...7, star: 3)]
            .joined(separator: " ")
        let cron = try CronExpression(text)
        let start = Int64.random(in: 0..<(60 * 365 * 86_400_000_000), using: &rng)
        let expected: Int64? = {
            var minute = start / 60_000_000 + 1
            for _ in 0..<(400 * 1440) {
                if cron.matches(minute * 60_000_000) { return minute * 60_000_000 }
                minute += 1
            }
            return nil
        }()
        let got = cron.next(after: start)
        if let expected {
            #expect(got == expected, "\(text) after \(cronISO(start))")
        } else if let got {
            #expect(got > start + 400 * 86_400_000_000, "\(text) after \(cronISO(start))")
        }
    }
}
