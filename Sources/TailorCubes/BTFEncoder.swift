import TailorKernel
import TailorSpec

/// Encodes YAML values into the bytes of a BTF type, by field name: how a spec fills
/// the tables and rodata of any object with BTF. Integers are little-endian (as BPF
/// on the host reads them); addresses and MACs are in network order (as in packets):
/// a 4-byte integer accepts "10.0.0.1", a 16-byte `__u8` array "fd00::1", a 6-byte one
/// a MAC; other `__u8`/`char` arrays take a string (zero-padded) or "0x" hex bytes.
struct BTFEncoder {
    let btf: BTF

    func encode(_ node: YAMLNode, as type: UInt32, what: String) throws(CubeConfigError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: btf.size(of: type))
        try write(node, as: type, into: &bytes, at: 0, what: what)
        return bytes
    }

    private func fail(_ message: String, _ node: YAMLNode) -> CubeConfigError {
        CubeConfigError(message, at: node.location)
    }

    private func write(_ node: YAMLNode, as type: UInt32, into bytes: inout [UInt8], at offset: Int,
                       what: String) throws(CubeConfigError) {
        switch btf.shape(of: type) {
        case .integer(let size, let signed):
            try writeInteger(node, size: size, signed: signed, into: &bytes, at: offset, what: what)
        case .enumeration(let size, let values):
            if case .scalar(let text) = node.value, let value = values[text] {
                try place(UInt64(bitPattern: value), size: size, into: &bytes, at: offset)
            } else {
                try writeInteger(node, size: size, signed: true, into: &bytes, at: offset,
                                 what: "\(what) (\(values.keys.sorted().joined(separator: ", ")) or a number)")
            }
        case .array(let element, let count):
            try writeArray(node, element: element, count: count, into: &bytes, at: offset, what: what)
        case .structure(_, let fields):
            let names = fields.map(\.name)
            guard case .mapping(let pairs) = node.value else {
                throw fail("expected a mapping of \(btf.typeName(type)) fields (\(names.joined(separator: ", "))) "
                           + "for \(what), found \(node.kindName)", node)
            }
            var seen: Set<String> = []
            for (key, value) in pairs {
                guard case .scalar(let name) = key.value else { throw fail("field names must be plain", key) }
                guard let field = fields.first(where: { $0.name == name }) else {
                    let hint = suggestion(for: name, among: names).map { " (did you mean '\($0)'?)" } ?? ""
                    throw fail("\(btf.typeName(type)) has no field '\(name)'\(hint); its fields: "
                               + names.joined(separator: ", "), key)
                }
                guard seen.insert(name).inserted else { throw fail("field '\(name)' given twice", key) }
                guard field.bitfieldSize == nil else { throw fail("bitfield '\(name)' cannot be set from a spec", key) }
                try write(value, as: field.type, into: &bytes, at: offset + field.offset, what: "\(what).\(name)")
            }
        case .other(let name):
            throw fail("\(what) has type \(name), which a spec cannot write", node)
        }
    }

    private func writeInteger(_ node: YAMLNode, size: Int, signed: Bool, into bytes: inout [UInt8], at offset: Int,
                              what: String) throws(CubeConfigError) {
        guard case .scalar(let text) = node.value else {
            throw fail("expected an integer for \(what), found \(node.kindName)", node)
        }
        if size == 4, let address = IPAddress.parse(text), address.count == 4 {
            bytes.replaceSubrange(offset..<offset + 4, with: address)
            return
        }
        let bits = size * 8
        let value: UInt64
        if text.hasPrefix("0x"), let parsed = UInt64(text.dropFirst(2), radix: 16) {
            value = parsed
        } else if let parsed = Int64(text) {
            let low = signed ? -(Int64(1) << (bits - 1)) : 0
            let high = signed ? (Int64(1) << (bits - 1)) - 1 : (bits >= 64 ? Int64.max : (Int64(1) << bits) - 1)
            guard parsed >= low, parsed <= high else {
                throw fail("\(parsed) does not fit \(what) (\(signed ? "signed" : "unsigned") \(bits)-bit)", node)
            }
            value = UInt64(bitPattern: parsed)
        } else if let parsed = UInt64(text), !signed, bits == 64 {
            value = parsed
        } else {
            throw fail("expected an integer for \(what), found \(node.kindName)", node)
        }
        guard bits >= 64 || value >> UInt64(bits) == 0 || signed else {
            throw fail("\(text) does not fit \(what) (unsigned \(bits)-bit)", node)
        }
        try place(value, size: size, into: &bytes, at: offset)
    }

    private func place(_ value: UInt64, size: Int, into bytes: inout [UInt8], at offset: Int) throws(CubeConfigError) {
        for index in 0..<min(size, 8) { bytes[offset + index] = UInt8(truncatingIfNeeded: value >> UInt64(8 * index)) }
    }

    private func writeArray(_ node: YAMLNode, element: UInt32, count: Int, into bytes: inout [UInt8], at offset: Int,
                            what: String) throws(CubeConfigError) {
        let stride = btf.size(of: element)
        if case .integer(1, _) = btf.shape(of: element), case .scalar(let text) = node.value {
            let value: [UInt8]? = if count == 16, let v6 = IPAddress.parse(text), v6.count == 16 {
                v6
            } else if count == 4, let v4 = IPAddress.parse(text), v4.count == 4 {
                v4
            } else if count == 6, let mac = MACAddress.parse(text) {
                mac
            } else if text.hasPrefix("0x"), text.count % 2 == 0 {
                hexBytes(text.dropFirst(2))
            } else {
                Array(text.utf8)
            }
            guard let value, value.count <= count else {
                throw fail("'\(text)' does not fit \(what) (\(count) bytes)", node)
            }
            bytes.replaceSubrange(offset..<offset + value.count, with: value)
            return
        }
        guard case .sequence(let items) = node.value else {
            throw fail("expected a list of up to \(count) items for \(what), found \(node.kindName)", node)
        }
        guard items.count <= count else {
            throw fail("\(what) holds \(count) items; \(items.count) are given", node)
        }
        for (index, item) in items.enumerated() {
            try write(item, as: element, into: &bytes, at: offset + index * stride, what: "\(what)[\(index)]")
        }
    }

    private func hexBytes(_ text: Substring) -> [UInt8]? {
        var bytes: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            guard let byte = UInt8(text[index..<next], radix: 16) else { return nil }
            bytes.append(byte)
            index = next
        }
        return bytes
    }
}

