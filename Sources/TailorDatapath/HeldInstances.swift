import TailorKernel

/// Descriptors of the live cube instances, held by a long-running controller (the
/// daemon) between reconciles. When someone removes an instance's pins while it
/// still runs in its slot, the instance is pinned again from these: opening a
/// program or map by id (`bpf_prog_get_fd_by_id`) needs CAP_SYS_ADMIN, which the
/// daemon's unit does not have, while a descriptor it already holds needs nothing.
///
/// Only instances the chains' records name are held: `refresh` lets go of the
/// others, so the kernel frees what a change retired.
public final class HeldInstances {
    struct Key: Hashable {
        var chain: String
        var cube: String
    }

    struct Held {
        var program: Program
        var id: UInt32
        var maps: [String: BPFMap]
    }

    private var held: [Key: Held] = [:]

    public init() {}

    /// Holds the instances the live chains' records name now: those already held
    /// stay as they are (a pin swapped since does not replace what runs), new ones
    /// are opened from their pins.
    public func refresh(pinRoot: PinRoot) {
        var next: [Key: Held] = [:]
        for (chain, record) in MetaRecordReader.live(under: pinRoot) {
            let chainPins = ChainPins(chain, under: pinRoot)
            for (cube, cubeRecord) in record.cubes {
                let key = Key(chain: chain, cube: cube)
                let pins = chainPins.cube(cube)
                var instance: Held
                if let before = held[key], before.id == cubeRecord.program {
                    instance = before
                } else {
                    guard let program = try? Program(pinnedAt: pins.program),
                          (try? program.info().id.rawValue) == cubeRecord.program else { continue }
                    instance = Held(program: program, id: cubeRecord.program, maps: [:])
                }
                for name in cubeRecord.maps.keys where instance.maps[name] == nil {
                    instance.maps[name] = try? BPFMap(pinnedAt: pins.map(name))
                }
                next[key] = instance
            }
        }
        held = next
    }

    /// The held instance of `cube` in `chain`, when it is program `id`.
    func instance(chain: String, cube: String, program id: UInt32) -> Held? {
        held[Key(chain: chain, cube: cube)].flatMap { $0.id == id ? $0 : nil }
    }
}
