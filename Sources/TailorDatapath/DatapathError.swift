/// A datapath operation that cannot go ahead, said so an operator can act on it.
///
/// These errors were once a bare sentence: a caller could only print it and a test
/// only match its words. Besides the sentence, it says what kind of failure it is
/// (`code`) and where it happened (the chain, cube and map), so a caller can tell
/// a chain that already exists from a hook someone else holds or a refused change,
/// and a log can show the chain and cube as fields of their own.
public struct DatapathError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is, for callers and tests that react differently to each.
    public enum Code: Sendable, Equatable {
        /// A chain is created, or moved into place, where one is already pinned.
        case chainExists
        /// Destroying a chain that is neither pinned nor running under the pin root.
        case noChain
        /// A cube the chain does not have.
        case noSuchCube
        /// Something in tailor's place is not provably tailor's (a directory without
        /// its record, a pinned root without its identity), so it is left alone.
        case notTailors
        /// The hook holds a program other than the chain's root.
        case hookHeldByOther
        /// The chain's meta record is empty.
        case recordUnreadable
        /// The chain's meta record is of a version this tailor does not read.
        case recordVersion
        /// The chain's meta record does not fit its map.
        case recordTooLarge
        /// The chain's identity does not fit the root's rodata.
        case identityTooLarge
        /// A commit a controller did not finish can be neither undone nor finished.
        case interruptedCommit
        /// The chain's root program is gone (neither pinned nor on its hook): nothing
        /// of the chain runs, and what is left of it can only be removed.
        case rootGone
        /// The hook's interface is gone, but the root runs on another (the interface
        /// was renamed): removing the chain's pins would empty its slots under it.
        case rootAttachedElsewhere
        /// A cube's pins are gone and its slot no longer holds its instance.
        case instanceGone
        /// Several maps of a program have the name of a pin to put back.
        case ambiguousMap
        /// The change is refused (`PreparedCommit.refusals`).
        case refused
        /// This tailor binary was built without an object it needs.
        case objectMissing
        /// An object without <tailor/cube.h>, so it cannot be chained.
        case notACubeObject
        /// An object without exactly one program for the chain's hook (XDP or TC).
        case notOneHookProgram
        /// A table the blueprint fills that is not a table of the cube's object.
        case noSuchTable
        /// More outputs than the cube ABI has ports.
        case tooManyOutputs
        /// A cube given another number of next cubes than it has outputs.
        case outputsMismatch
        /// A map to share in a zone that the cube's object does not declare.
        case sharedMapMissing
        /// Versioned tables or their generation word not laid out as
        /// <tailor/versioned.h> lays them out.
        case versionedTableLayout
        /// A content-keyed table given another value for a key it already holds.
        case contentKeyConflict
    }

    public let code: Code
    /// The chain it happened in, when known there.
    public let chain: String?
    /// The cube ("root" for the chain's root program).
    public let cube: String?
    /// The map or table: its declared name, or its label where only the map is at hand.
    public let map: String?
    /// What went wrong and what to do. `description` puts the place before it
    /// ("cube <cube>: ", else "chain <chain>: "), except for a sentence that names
    /// its place itself ("chain <chain> already exists at …"): then this is all of it.
    public let message: String
    private let placeFirst: Bool

    /// An error that reads "cube <cube>: <message>" when it names a cube, else
    /// "chain <chain>: <message>", else `message` alone.
    init(_ code: Code, chain: String? = nil, cube: String? = nil, map: String? = nil, _ message: String) {
        self.init(code, chain: chain, cube: cube, map: map, message: message, placeFirst: true)
    }

    /// An error that reads `sentence` as it is: it names its place itself, or needs none.
    init(_ code: Code, chain: String? = nil, cube: String? = nil, map: String? = nil, sentence: String) {
        self.init(code, chain: chain, cube: cube, map: map, message: sentence, placeFirst: false)
    }

    private init(_ code: Code, chain: String?, cube: String?, map: String?, message: String, placeFirst: Bool) {
        self.code = code
        self.chain = chain
        self.cube = cube
        self.map = map
        self.message = message
        self.placeFirst = placeFirst
    }

    public var description: String {
        guard placeFirst, let place = cube.map({ "cube \($0)" }) ?? chain.map({ "chain \($0)" }) else { return message }
        return "\(place): \(message)"
    }

    static func chainExists(_ chain: String, at directory: String) -> DatapathError {
        DatapathError(.chainExists, chain: chain, sentence: "chain \(chain) already exists at \(directory)")
    }

    static func noChain(_ chain: String, under pinRoot: String) -> DatapathError {
        DatapathError(.noChain, chain: chain, sentence: "no chain \(chain) under \(pinRoot)")
    }

    static func noSuchCube(_ cube: String, in chain: String) -> DatapathError {
        DatapathError(.noSuchCube, chain: chain, cube: cube, sentence: "chain \(chain) has no cube \(cube)")
    }

    /// The change `refusals` refuse, one refusal a line.
    static func refused(_ refusals: [String], chain: String) -> DatapathError {
        DatapathError(.refused, chain: chain, sentence: refusals.joined(separator: "\n"))
    }
}
