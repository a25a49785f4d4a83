import Foundation
import SluiceCore
import SluiceTestSupport
import Testing

/// Cron fire times against croniter (Tests/SluiceCoreTests/cron_reference.py).
@Suite struct CronTests {
    static let starts = ["2026-11-22T17:03:27Z", "2024-02-27T23:59:00Z", "2026-12-31T23:58:00Z", "2025-03-01T00:00:00Z"]

    static let expressions = [
        "*/5 * * * *", "15 * * * *", "0 9 * * mon-fri", "10-50/20 * * * *", "0 0 31 * *", "0 0 29 2 *",
        "0 0 13 * fri", "30 6 * * 7", "0 12 * jan,jul *", "0 0 1 1 *", "@hourly", "@daily", "@weekly", "@monthly",
        "@yearly", "5/15 * * * *", "0 22 * * 1-5", "0 0 * * sun", "45 23 28-31 * *", "0 */6 * * *",
        "0 0 1,15 * 3", "59 23 31 12 *", "0 8-18/2 * * mon,wed,fri", "0 0 * * 0-6", "1 2 3 4 *", "*/7 */5 * * *",
    ]

    @Test func fireTimesMatchCroniter() throws {
        let formatter = ISO8601DateFormatter()
        var requests: [(String, Int64)] = []
        var input = Data()
        for expr in Self.expressions {
            for start in Self.starts {
                let seconds = Int64(formatter.date(from: start)!.timeIntervalSince1970)
                requests.append((expr, seconds))
                input += try JSONSerialization.data(withJSONObject: ["expr": expr, "start": seconds, "count": 5])
                input += Data("\n".utf8)
            }
        }
        let out = try TestSupport.python(script: TestSupport.repoRoot + "/Tests/SluiceCoreTests/cron_reference.py", input: input)
        let lines = String(decoding: out, as: UTF8.self).split(separator: "\n")
        #expect(lines.count == requests.count)
        for ((expr, start), line) in zip(requests, lines) {
            let expected = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [Int]
            let cron = try CronExpression(expr)
            let ours = cron.fireTimes(after: start * 1_000_000, upTo: Int64.max, limit: 5).map { Int($0 / 1_000_000) }
            #expect(ours == expected, "\(expr) after \(start)")
        }
    }

    @Test(arguments: [
        ("* * * *", "expected 5 fields"), ("60 * * * *", "minute: 60 is out of 0-59"), ("* 24 * * *", "hour"),
        ("* * 0 * *", "day-of-month"), ("* * * 13 *", "month"), ("* * * * 8", "day-of-week"), ("*/0 * * * *", "invalid step"),
        ("5-1 * * * *", "reversed range"), ("* * * foo *", "not a number"), ("1,,2 * * * *", "empty list item"), ("@often", "expected 5 fields"),
    ])
    func rejectsInvalid(expression: String, fragment: String) {
        do {
            _ = try CronExpression(expression)
            Issue.record("accepted \(expression)")
        } catch {
            #expect(error.description.contains(fragment), "\(error)")
        }
    }
}
