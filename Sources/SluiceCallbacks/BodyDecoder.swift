import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import SluiceCore

/// Turns a request body into fields by its media type: JSON as it is, XML and form
/// encoding flattened into objects.
///
/// - JSON (`application/json`, `…+json`): the parsed value.
/// - XML (`application/xml`, `text/xml`, `…+xml`), read with libxml2 (FoundationXML),
///   external entities never resolved: `{root: …}` where an element with neither
///   attributes nor child elements is its text (null when empty), and any other element
///   an object of `@attribute` values, child elements by name (an array when a name
///   repeats) and `#text` (its text, when not only whitespace). The shape of Python's
///   `xmltodict`, which the tests compare with.
/// - Form (`application/x-www-form-urlencoded`): `name=value` pairs split on `&`, `+`
///   as space, percent escapes decoded (invalid escapes kept as written, invalid UTF-8
///   as U+FFFD); a name given more than once becomes an array of its values in order.
/// - No or another media type: sniffed from the first byte that is not whitespace
///   (`{`/`[` JSON, `<` XML); an empty body is an empty object; anything else is kept
///   as text (`nil` fields, the caller keeps the text).
public enum BodyDecoder {
    public enum Format: String, Sendable, CaseIterable { case json, xml, form, text }

    public static func format(contentType: String?, body: [UInt8]) -> Format {
        if let ct = contentType {
            let media = ct.split(separator: ";").first.map { $0.trimmingSpaces.lowercased() } ?? ""
            if media == "application/json" || media == "text/json" || media.hasSuffix("+json") { return .json }
            if media == "application/xml" || media == "text/xml" || media.hasSuffix("+xml") { return .xml }
            if media == "application/x-www-form-urlencoded" { return .form }
        }
        guard let first = body.first(where: { !($0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D) }) else { return .text }
        if first == UInt8(ascii: "{") || first == UInt8(ascii: "[") { return .json }
        if first == UInt8(ascii: "<") { return .xml }
        return .text
    }

    public static func decode(_ body: [UInt8], as format: Format) throws(RequestError) -> Value? {
        switch format {
        case .json:
            do { return try JSONParser.parse(body) } catch { throw RequestError("the JSON body is malformed: \(error.description)") }
        case .xml:
            return try XMLFlattener.flatten(body)
        case .form:
            return form(body)
        case .text:
            return body.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) ? .object(Fields()) : nil
        }
    }

    public static func form(_ body: [UInt8]) -> Value {
        var order: [String] = []
        var values: [String: [String]] = [:]
        for pair in body.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            let eq = pair.firstIndex(of: UInt8(ascii: "="))
            let name = percentDecode(eq.map { pair[..<$0] } ?? pair[...])
            let value = eq.map { percentDecode(pair[($0 + 1)...]) } ?? ""
            if values[name] == nil { order.append(name) }
            values[name, default: []].append(value)
        }
        var fields = Fields()
        for name in order {
            let v = values[name]!
            fields.appendUnchecked(name, v.count == 1 ? .string(v[0]) : .array(v.map(Value.string)))
        }
        return .object(fields)
    }

    static func percentDecode(_ bytes: ArraySlice<UInt8>) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let b = bytes[i]
            if b == UInt8(ascii: "+") {
                out.append(0x20)
            } else if b == UInt8(ascii: "%"), bytes.endIndex - i >= 3, let h = hex(bytes[i + 1]), let l = hex(bytes[i + 2]) {
                out.append(h << 4 | l)
                i += 3
                continue
            } else {
                out.append(b)
            }
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x41...0x46: c - 0x41 + 10
        case 0x61...0x66: c - 0x61 + 10
        default: nil
        }
    }
}

/// Builds the flattened object of an XML document from libxml2's SAX events.
final class XMLFlattener: NSObject, XMLParserDelegate {
    private final class Element {
        let name: String
        var attributes: [(String, String)]
        var children: [(String, Value)] = []
        var text = ""
        init(name: String, attributes: [(String, String)]) {
            self.name = name
            self.attributes = attributes
        }
    }

    private var stack: [Element] = []
    private var root: (String, Value)?
    private var failure: String?

    static func flatten(_ body: [UInt8]) throws(RequestError) -> Value {
        let flattener = XMLFlattener()
        let parser = XMLParser(data: Data(body))
        parser.shouldResolveExternalEntities = false
        parser.shouldProcessNamespaces = false
        parser.delegate = flattener
        let ok = parser.parse()
        if let failure = flattener.failure { throw RequestError(failure) }
        guard ok, let root = flattener.root else {
            let line = parser.lineNumber, column = parser.columnNumber
            throw RequestError("the XML body is malformed (line \(line), column \(column))")
        }
        var fields = Fields()
        fields.appendUnchecked(root.0, root.1)
        return .object(fields)
    }

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName qName: String?,
                attributes attributeDict: [String: String] = [:]) {
        if stack.count >= JSONParser.maxDepth {
            failure = "the XML body nests deeper than \(JSONParser.maxDepth) elements"
            parser.abortParsing()
            return
        }
        // Foundation hands attributes over as a dictionary: sort them by name for a stable order.
        stack.append(Element(name: qName ?? elementName, attributes: attributeDict.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }))
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        stack.last?.text += string
    }

    func parser(_ parser: XMLParser, foundCDATA CDATABlock: Data) {
        stack.last?.text += String(decoding: CDATABlock, as: UTF8.self)
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
        guard let element = stack.popLast() else { return }
        let text = element.text.trimmingCharacters(in: .whitespacesAndNewlines)
        let value: Value
        if element.attributes.isEmpty && element.children.isEmpty {
            value = text.isEmpty ? .null : .string(text)
        } else {
            var fields = Fields()
            for (name, v) in element.attributes { fields.appendUnchecked("@" + name, .string(v)) }
            var counts: [String: Int] = [:]
            for (name, _) in element.children { counts[name, default: 0] += 1 }
            var grouped: [String: [Value]] = [:]
            var order: [String] = []
            for (name, child) in element.children {
                if grouped[name] == nil { order.append(name) }
                grouped[name, default: []].append(child)
            }
            for name in order {
                let items = grouped[name]!
                fields.appendUnchecked(name, counts[name]! > 1 ? .array(items) : items[0])
            }
            if !text.isEmpty { fields.appendUnchecked("#text", .string(text)) }
            value = .object(fields)
        }
        if let parent = stack.last { parent.children.append((element.name, value)) } else { root = (element.name, value) }
    }

    func parser(_ parser: XMLParser, parseErrorOccurred parseError: Error) {
        if failure == nil { failure = "the XML body is malformed (line \(parser.lineNumber), column \(parser.columnNumber))" }
    }
}
