import TailorKernel

/// Where a chain's pins are on bpffs: the one place tailor's layout under a pin
/// root is spelled. Everything else asks this type for a path.
///
///     <pin root>/
///       _transaction                  pinned while an apply switches its chains
///       <chain>/                      a live chain; `_creating-<chain>` while it is
///                                     built, `_removing-<chain>-<root id>` once moved aside
///         meta                        the chain's record (`ChainRecord`)
///         root                        the root program, the one on the hook
///         progs, packet_meta, root_counters
///                                     the maps the root creates: slots, per-packet
///                                     metadata, the root's counters
///         cubes/<cube>/prog           a cube instance's program
///         cubes/<cube>/maps/<map>     its maps, by their declared names
///         staging/<cube>/...          instances a commit staged, laid out as under cubes/
///         config/<digest>             the configs the cubes were committed with (`ConfigStore`)
public struct ChainPins: Sendable, Hashable {
    /// The chain's own pins, by the name each has in its directory.
    public enum Pin: String, Sendable, CaseIterable {
        case meta, root, progs
        case packetMeta = "packet_meta"
        case rootCounters = "root_counters"

        /// The pins of the maps the root creates, with the name the kernel keeps for each.
        static let rootMaps: [(pin: Pin, map: String)] = [
            (.progs, ABI.progs), (.packetMeta, ABI.meta), (.rootCounters, ABI.counters),
        ]
    }

    /// Where a chain is built before it goes live: observe reports what is left
    /// there as an interrupted apply, and the next apply removes it.
    public static let buildingPrefix = "_creating-"
    /// Where a chain goes once it is detached, until its pins are removed.
    public static let removingPrefix = "_removing-"

    /// Paths relative to a chain's directory (`cubes/fw/prog`), as messages name them.
    public static let relative = ChainPins(directory: "")

    /// The chain's directory.
    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    /// The pins of live chain `chain` under `pinRoot`.
    public init(_ chain: String, under pinRoot: PinRoot) {
        self.init(directory: pinRoot.appending(chain))
    }

    /// Where chain `chain` is built.
    static func building(_ chain: String, under pinRoot: PinRoot) -> ChainPins {
        ChainPins(buildingPrefix + chain, under: pinRoot)
    }

    /// Where chain `chain` with root program `root` goes when moved aside: its own
    /// place even while a replacement of the same name is moved aside too.
    static func removing(_ chain: String, root: ProgramID, under pinRoot: PinRoot) -> ChainPins {
        ChainPins(removingPrefix + chain + "-\(root.rawValue)", under: pinRoot)
    }

    /// Whether a directory under the pin root is named as what an interrupted apply
    /// leaves (a chain being built or removed), not as a chain. The name alone does
    /// not make it tailor's: `Chain.hasRecord` does.
    public static func isLeftover(_ name: String) -> Bool {
        name.hasPrefix(buildingPrefix) || name.hasPrefix(removingPrefix)
    }

    /// Pinned while an apply's chains are being switched and finished, so that
    /// recovery after a crash knows the transaction never completed.
    public static func transactionMarker(under pinRoot: PinRoot) -> String {
        pinRoot.appending("_transaction")
    }

    /// The path of one of the chain's own pins.
    public subscript(_ pin: Pin) -> String { path(pin.rawValue) }

    /// The directory of the cube instances.
    public var cubes: String { path("cubes") }
    /// The directory of the instances a commit staged.
    public var staging: String { path("staging") }
    /// The directory of the committed configs.
    public var config: String { path("config") }

    /// The pins of `cube`'s live instance.
    public func cube(_ cube: String) -> CubePins { CubePins(directory: path("cubes/" + cube)) }

    /// The pins of `cube`'s instance staged by a commit.
    func staged(_ cube: String) -> CubePins { CubePins(directory: path("staging/" + cube)) }

    private func path(_ name: String) -> String { directory.isEmpty ? name : directory + "/" + name }
}

/// Where one cube instance's pins are: `<dir>/prog` and `<dir>/maps/<map>`.
public struct CubePins: Sendable, Hashable {
    public let directory: String

    /// The instance's program.
    public var program: String { directory + "/prog" }
    /// The directory of its maps.
    public var maps: String { directory + "/maps" }

    /// Map `name` of the instance (its declared name).
    public func map(_ name: String) -> String { maps + "/" + name }
}
