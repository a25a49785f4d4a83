import Foundation
import SluiceCore

/// The progress line of long runs on a terminal (standard error): one line, redrawn at
/// most five times a second, for every partition running (a parallel backfill shows them
/// side by side); cleared when a partition ends, before its summary line. Runs shorter
/// than `delay` never draw it. Only counts are shown, never a value of the data.
public final class TerminalProgress: RunProgress, @unchecked Sendable {
    // All mutable state is guarded by `lock`.
    private let lock = NSLock()
    private var entries: [(key: String, text: String)] = []
    private var firstUpdate: Double?
    private var lastDraw: Double = -.infinity
    private var drawn = false
    private let write: @Sendable (String) -> Void
    private let now: @Sendable () -> Double
    private let width: Int
    let delay: Double
    let interval: Double

    public init(write: @escaping @Sendable (String) -> Void, now: @escaping @Sendable () -> Double, width: Int = 100,
                delay: Double = 0.5, interval: Double = 0.2) {
        self.write = write
        self.now = now
        self.width = max(20, width)
        self.delay = delay
        self.interval = interval
    }

    /// A display on standard error when it is a terminal (and `TERM` is not `dumb`), else nil.
    public static func forStandardError() -> TerminalProgress? {
        guard isatty(STDERR_FILENO) == 1, ProcessInfo.processInfo.environment["TERM"] != "dumb" else { return nil }
        var size = winsize()
        let columns = ioctl(STDERR_FILENO, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 0 ? Int(size.ws_col) : 100
        let clock = ContinuousClock()
        let start = clock.now
        return TerminalProgress(write: { FileHandle.standardError.write(Data($0.utf8)) },
                                now: { let d = clock.now - start; return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 },
                                width: columns - 1)
    }

    public func update(_ summary: RunSummary, elapsed: Double) {
        let key = summary.pipeline + " " + summary.partition
        let rate = elapsed > 0 ? Double(summary.read) / elapsed : 0
        var text = "\(key): \(Self.count(summary.read)) read, \(Self.count(summary.loaded)) loaded"
        if summary.filtered > 0 { text += ", \(Self.count(summary.filtered)) filtered" }
        if summary.rejected > 0 { text += ", \(Self.count(summary.rejected)) rejected" }
        text += ", \(Self.rate(rate))/s"
        let t = now()
        let output: String? = lock.withLock {
            if let i = entries.firstIndex(where: { $0.key == key }) { entries[i].text = text } else { entries.append((key, text)) }
            if firstUpdate == nil { firstUpdate = t }
            guard t - firstUpdate! >= delay, t - lastDraw >= interval else { return nil }
            lastDraw = t
            drawn = true
            return "\r\u{1B}[K" + Self.fit(entries.map(\.text).joined(separator: " | "), width: width)
        }
        if let output { write(output) }
    }

    public func finished(pipeline: String, partition: String) {
        let key = pipeline + " " + partition
        let clear: Bool = lock.withLock {
            entries.removeAll { $0.key == key }
            if entries.isEmpty { firstUpdate = nil }
            defer { drawn = false; lastDraw = -.infinity }
            return drawn
        }
        if clear { write("\r\u{1B}[K") }
    }

    /// `1234567` → `1,234,567`.
    static func count(_ n: Int) -> String {
        let digits = Array(String(n.magnitude))
        var out = ""
        for (i, d) in digits.enumerated() {
            if i > 0, (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(d)
        }
        return (n < 0 ? "-" : "") + out
    }

    /// Records per second, short: `950`, `41.2k`, `1.35M`.
    static func rate(_ r: Double) -> String {
        if r >= 1e6 { return String(format: "%.2fM", r / 1e6) }
        if r >= 1e3 { return String(format: "%.1fk", r / 1e3) }
        return String(Int(r))
    }

    static func fit(_ s: String, width: Int) -> String {
        s.count <= width ? s : String(s.prefix(width - 1)) + "…"
    }
}
