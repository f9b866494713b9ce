import Foundation
import TailorKernel

/// State maps shared by cube instances across chains. A zone names one map that
/// every instance declaring that zone for that map uses: the firewalls on a host's
/// XDP ingress and TC egress, or on a router's two interfaces, keep one connection
/// table, so each sees the replies to what the other let through. The map is no
/// pin of its own: it lives while any instance pins it, and is found through the
/// chains' meta records (`CubeRecord.zones`). One registry serves one apply (or
/// plan): instances it prepares join their zones as they are loaded.
public final class StateZones {
    struct Key: Hashable {
        var zone: String
        var map: String
    }

    /// A zone's map and the layout recorded with the instance that holds it (nil
    /// in records that predate recorded layouts).
    struct Shared {
        var map: BPFMap
        var layout: MapLayout?
    }

    let pinRoot: PinRoot
    /// The zones' maps: the live chains' (read on first use), then new instances'.
    private var known: [Key: Shared]?

    public init(pinRoot: PinRoot) { self.pinRoot = pinRoot }

    private func maps() throws -> [Key: Shared] {
        if let known { return known }
        let scanned = try scan()
        known = scanned
        return scanned
    }

    /// The zone's map, or nil when no instance has it yet.
    func map(zone: String, name: String) throws -> Shared? {
        try maps()[Key(zone: zone, map: name)]
    }

    /// Makes a newly loaded instance's shared maps its zones' maps where a zone had
    /// none (the instance was loaded after `map` found none).
    func register(_ instance: CubeInstance) throws {
        for (name, zone) in instance.record.zones ?? [:] {
            guard let map = instance.maps[name], try maps()[Key(zone: zone, map: name)] == nil else { continue }
            known?[Key(zone: zone, map: name)] = Shared(map: map, layout: instance.stateLayouts[name])
        }
    }

    /// The zone maps of the live chains, from their records and cube pins.
    private func scan() throws -> [Key: Shared] {
        var found: [Key: Shared] = [:]
        for (chain, record) in MetaRecordReader.live(under: pinRoot) {
            let pins = ChainPins(chain, under: pinRoot)
            for (cube, cubeRecord) in record.cubes.sorted(by: { $0.key < $1.key }) {
                for (name, zone) in (cubeRecord.zones ?? [:]).sorted(by: { $0.key < $1.key }) {
                    let pin = pins.cube(cube).map(name)
                    guard found[Key(zone: zone, map: name)] == nil, pinRoot.exists(pin) else { continue }
                    found[Key(zone: zone, map: name)] = Shared(
                        map: try BPFMap(pinnedAt: pin), layout: record.layouts?[cubeRecord.objectDigest]?[name])
                }
            }
        }
        return found
    }
}

extension StatePlan {
    /// Takes each shared map from its zone when the zone has one: the same map,
    /// never migrated or reset, since other instances use it as it is. A new object
    /// whose declaration differs from the zone's map is refused.
    mutating func join(_ zones: StateZones, cube: String, blueprint: CubeBlueprint) throws {
        guard !blueprint.sharedState.isEmpty else { return }
        let declared = try MapLayout.declared(in: BPFObject(bytes: blueprint.object, name: cube))
        for (name, zone) in blueprint.sharedState.sorted(by: { $0.key < $1.key }) {
            guard let layout = declared[name] else {
                throw DatapathError(.sharedMapMissing, cube: cube, map: name,
                    "its object declares no map \(name) to share in zone \(zone)")
            }
            guard let shared = try zones.map(zone: zone, name: name) else { continue }
            migrate[name] = nil
            let live = try MapLayout(of: shared.map, recorded: shared.layout)
            guard case .reuse = StateCarry.between(live, layout, reset: false) else {
                refusals.append("cube \(cube): state map \(name) is shared in zone \(zone), whose map has another "
                    + "layout; a shared map cannot be migrated while other cubes use it: give this cube a new zone")
                continue
            }
            carry[name] = shared.map
            if carries[name] != nil { carries[name] = .reuse }
        }
    }
}
