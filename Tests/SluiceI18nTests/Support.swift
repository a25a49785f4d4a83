import Foundation
import SluiceTestSupport
import Testing
@testable import SluiceI18n

/// Paths and the Python reference, for the SluiceI18n tests.
enum I18nTestSupport {
    static var sharedData: String { TestSupport.sharedData }
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
        do { return try TestSupport.python(script: referenceScript, paths) } catch { throw ReferenceFailure(description: "\(error)") }
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

    static func tempDir() throws -> String { try TestSupport.scratchDirectory("i18n") }
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
