import Foundation
import SluiceCore
@testable import SluiceKit
import Testing

/// The terminal progress line: drawn only for runs longer than its delay, at most every
/// interval, one segment per running partition, cleared when a partition ends.
@Suite struct ProgressTests {
    final class Screen: @unchecked Sendable {
        // Guarded by `lock`: written by the display, read by the test.
        private let lock = NSLock()
        private var writes: [String] = []
        private var time = 0.0
        func write(_ s: String) { lock.withLock { writes.append(s) } }
        var all: [String] { lock.withLock { writes } }
        func set(_ t: Double) { lock.withLock { time = t } }
        var now: Double { lock.withLock { time } }
    }

    static func summary(_ partition: String, read: Int, rejected: Int = 0) -> RunSummary {
        var s = RunSummary(pipeline: "p", partition: partition)
        s.read = read
        s.loaded = read - rejected
        s.rejected = rejected
        return s
    }

    @Test func drawsAfterTheDelayThrottledAndClears() {
        let screen = Screen()
        let progress = TerminalProgress(write: { screen.write($0) }, now: { screen.now }, width: 200, delay: 0.5, interval: 0.2)
        // (time, read) updates; expected draw after each (nil = none).
        let steps: [(Double, Int, String?)] = [
            (0.0, 2048, nil),                 // first update: the delay starts
            (0.3, 4096, nil),                 // still inside the delay
            (0.6, 1_234_567, "p 2026-11-18: 1,234,567 read, 1,234,567 loaded, 2.06M/s"),
            (0.7, 1_300_000, nil),            // throttled
            (0.9, 1_400_000, "p 2026-11-18: 1,400,000 read, 1,400,000 loaded, 1.56M/s"),
        ]
        for (t, read, expected) in steps {
            screen.set(t)
            let before = screen.all.count
            progress.update(Self.summary("2026-11-18", read: read), elapsed: t)
            if let expected {
                #expect(screen.all.count == before + 1)
                #expect(screen.all.last == "\r\u{1B}[K" + expected)
            } else {
                #expect(screen.all.count == before, "no draw at \(t)")
            }
        }
        progress.finished(pipeline: "p", partition: "2026-11-18")
        #expect(screen.all.last == "\r\u{1B}[K")
    }

    @Test func aShortRunDrawsNothing() {
        let screen = Screen()
        let progress = TerminalProgress(write: { screen.write($0) }, now: { screen.now }, width: 80)
        for t in stride(from: 0.0, to: 0.45, by: 0.05) {
            screen.set(t)
            progress.update(Self.summary("2026-11-18", read: Int(t * 1000)), elapsed: t)
        }
        progress.finished(pipeline: "p", partition: "2026-11-18")
        #expect(screen.all.isEmpty)
    }

    @Test func partitionsSideBySideAndCutToTheWidth() {
        let screen = Screen()
        let progress = TerminalProgress(write: { screen.write($0) }, now: { screen.now }, width: 60, delay: 0, interval: 0)
        progress.update(Self.summary("2026-11-18", read: 10, rejected: 2), elapsed: 1)
        #expect(screen.all.last == "\r\u{1B}[K" + "p 2026-11-18: 10 read, 8 loaded, 2 rejected, 10/s")
        progress.update(Self.summary("2026-11-19", read: 5), elapsed: 1)
        let line = screen.all.last!
        #expect(line.hasPrefix("\r\u{1B}[Kp 2026-11-18: 10 read") && line.hasSuffix("…"))
        #expect(line.count == "\r\u{1B}[K".count + 60)
    }

    @Test(arguments: [(0, "0"), (999, "999"), (1000, "1,000"), (1_234_567, "1,234,567"), (-12345, "-12,345")])
    func counts(n: Int, text: String) { #expect(TerminalProgress.count(n) == text) }
}
