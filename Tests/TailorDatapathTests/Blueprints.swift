import TailorDatapath
import TailorKernel
import TailorTestKit

/// Blueprints of the datapath cubes, built by hand the way TailorCubes does.
enum Blueprints {
    static func counter() throws -> CubeBlueprint {
        CubeBlueprint(type: "counter", object: try Fixtures.datapathObject("counter"))
    }

    static func tag(_ id: UInt16, record: Bool = false) throws -> CubeBlueprint {
        CubeBlueprint(type: "tag", object: try Fixtures.datapathObject("tag"),
                      rodata: ["tag_id": le(id), "record": [record ? 1 : 0]])
    }

    static func split() throws -> CubeBlueprint {
        CubeBlueprint(type: "split", object: try Fixtures.testObject("split"), outputs: 2)
    }

    /// A filter that drops UDP to `port` and passes everything else.
    static func dropUDP(port: UInt16) throws -> CubeBlueprint {
        var rule = [UInt8](repeating: 0, count: 48)
        rule[1] = 17                         // proto UDP
        rule[36...37] = le(UInt16(0))[...]   // sport 0-65535
        rule[38...39] = le(UInt16(0xffff))[...]
        rule[40...41] = le(port)[...]        // dport port-port
        rule[42...43] = le(port)[...]
        rule[46] = 1                         // drop
        return CubeBlueprint(type: "filter", object: try Fixtures.datapathObject("filter"),
                             rodata: ["rule_count": le(UInt32(1))],
                             tables: ["rules": [TableEntry(key: le(UInt32(0)), value: rule)]])
    }

    static func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian, Array.init) }
}

/// XDP_PASS / TC_ACT_OK and XDP_DROP / TC_ACT_SHOT for a hook.
func verdicts(_ hook: ChainHook) -> (pass: UInt32, drop: UInt32) { hook.isXDP ? (2, 1) : (0, 2) }

extension Lab {
    /// A chain hook on side b's interface (ingress for XDP and TC ingress) or side
    /// a's (TC egress), so traffic from a to b crosses it.
    func hook(_ kind: ChainHook.Kind) -> ChainHook {
        let side = kind == .tcEgress ? a : b
        return ChainHook(interface: side.interfaceName, namespace: side.namespace.name, kind: kind)
    }
}
