import Foundation
import Testing
@testable import SluiceI18n

/// Paths and the Python reference, for the SluiceI18n tests.
enum I18nTestSupport {
    /// Repository root: this file is at Tests/SluiceI18nTests/Support.swift.
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// `<repo root>/../shared/data`, or `SLUICE_SHARED_DATA`.
    static var sharedData: String {
        ProcessInfo.processInfo.environment["SLUICE_SHARED_DATA"]
            ?? URL(fileURLWithPath: repoRoot).deletingLastPathComponent().appendingPathComponent("shared/data").path
    }
    static var i18n: String { sharedData + "/i18n" }

    static let referenceScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("i18n_reference.py").path

    static func files(_ sub: String, ext: String) -> [String] {
        let base = i18n + "/" + sub
        guard let e = FileManager.default.enumerator(atPath: base) else { return [] }
        return e.compactMap { $0 as? String }.filter { $0.hasSuffix("." + ext) }.sorted().map { base + "/" + $0 }
    }
    static var poFiles: [String] { files("gettext", ext: "po") }
    static var moFiles: [String] { files("gettext", ext: "mo") }
    static var ymlFiles: [String] { files("rails", ext: "yml") }

    /// `SLUICE_PYTHON`, else `python3` on PATH.
    static var python: String {
        if let p = ProcessInfo.processInfo.environment["SLUICE_PYTHON"] { return p }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
            let c = "\(dir)/python3"
            if FileManager.default.isExecutableFile(atPath: c) { return c }
        }
        return "/usr/bin/python3"
    }

    struct ReferenceFailure: Error, CustomStringConvertible, Sendable { var description: String }

    /// Runs the reference script over files; throws (so the test fails) if Python, polib or PyYAML is missing.
    static func reference(_ paths: [String]) throws -> [String: Any] {
        try decode(try referenceData(paths))
    }

    static func decode(_ data: Data) throws -> [String: Any] {
        guard let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] else { throw ReferenceFailure(description: "bad reference output") }
        return obj
    }

    static func referenceData(_ paths: [String]) throws -> Data {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [referenceScript] + paths
        let out = Pipe()
        let errPath = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-i18n-ref-\(UUID().uuidString).err").path
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: errPath) }
        p.standardOutput = out
        p.standardError = FileHandle(forWritingAtPath: errPath)
        do { try p.run() } catch { throw ReferenceFailure(description: "cannot run \(python): \(error) (set SLUICE_PYTHON)") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
            throw ReferenceFailure(description: "python reference failed (\(p.terminationStatus)): \(err)")
        }
        return data
    }

    /// The reference for every shared catalog, computed once (one Python process).
    static let allReferences: Result<Data, ReferenceFailure> = {
        do { return .success(try referenceData(poFiles + moFiles + ymlFiles)) } catch let e as ReferenceFailure { return .failure(e) } catch {
            return .failure(ReferenceFailure(description: "\(error)"))
        }
    }()

    static func referenceFor(_ path: String) throws -> [[String: Any]] {
        let all = try decode(try allReferences.get())
        guard let v = all[path] as? [[String: Any]] else { throw ReferenceFailure(description: "no reference for \(path)") }
        return v
    }

    static func tempDir() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-i18n-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }
}

/// Writes a `.mo` file in either byte order (used to test both readers on the same content).
func makeMO(_ messages: [GettextMessage], littleEndian: Bool) -> Data {
    let msgs = messages.map { m -> ([UInt8], [UInt8]) in
        var o = [UInt8]()
        if let c = m.context { o += Array(c.utf8) + [4] }
        o += Array(m.id.utf8)
        if let p = m.idPlural { o += [0] + Array(p.utf8) }
        let t = Array(m.translations.joined(separator: "\u{0}").utf8)
        return (o, t)
    }.sorted { $0.0.lexicographicallyPrecedes($1.0) }
    var out = [UInt8]()
    func u32(_ v: Int) {
        let x = UInt32(v)
        let b = [UInt8(x & 0xFF), UInt8((x >> 8) & 0xFF), UInt8((x >> 16) & 0xFF), UInt8(x >> 24)]
        out += littleEndian ? b : b.reversed()
    }
    let n = msgs.count
    let origTable = 28, transTable = 28 + 8 * n
    var strOffset = 28 + 16 * n
    u32(0x950412de); u32(0); u32(n); u32(origTable); u32(transTable); u32(0); u32(0)
    var blobs = [UInt8]()
    var origEntries: [(Int, Int)] = [], transEntries: [(Int, Int)] = []
    for (o, _) in msgs { origEntries.append((o.count, strOffset)); blobs += o + [0]; strOffset += o.count + 1 }
    for (_, t) in msgs { transEntries.append((t.count, strOffset)); blobs += t + [0]; strOffset += t.count + 1 }
    for (l, o) in origEntries { u32(l); u32(o) }
    for (l, o) in transEntries { u32(l); u32(o) }
    return Data(out + blobs)
}
