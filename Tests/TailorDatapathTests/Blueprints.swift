import TailorCubes
import TailorDatapath
import TailorKernel
import TailorLab
import TailorTestKit

/// Blueprints the chain tests use: the built-in cubes, and the `split` fixture.
enum Blueprints {
    static func counter() throws -> CubeBlueprint { try Counter.blueprint() }

    static func tag(_ id: UInt16, record: Bool = false) throws -> CubeBlueprint {
        try Tag.blueprint(id: id, record: record)
    }

    static func split() throws -> CubeBlueprint {
        CubeBlueprint(type: "split", object: try Fixtures.testObject("split"), outputs: 2)
    }

    /// A filter that drops UDP to `port` and passes everything else.
    static func dropUDP(port: UInt16) throws -> CubeBlueprint {
        try Filter.blueprint(rules: [.init(proto: 17, destinationPorts: port...port, action: .drop)],
                             defaultAction: .pass)
    }
}

/// XDP_PASS / TC_ACT_OK and XDP_DROP / TC_ACT_SHOT for a hook.
func verdicts(_ hook: ChainHook) -> (pass: UInt32, drop: UInt32) { hook.isXDP ? (2, 1) : (0, 2) }

extension Lab {
    /// A chain hook on side b's interface (ingress for XDP and TC ingress) or side
    /// a's (TC egress), so traffic from a to b crosses it.
    func hook(_ kind: ChainHook.Kind) -> ChainHook {
        let side = kind == .tcEgress ? a : b
        return ChainHook(interface: side.interfaceName, namespace: side.namespaceName, kind: kind)
    }
}
