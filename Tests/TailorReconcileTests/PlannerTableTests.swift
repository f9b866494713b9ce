import Testing
import TailorDatapath
@testable import TailorReconcile

/// Table-driven planner cases on one chain: the live chain is `a b c d` (object
/// versions 1), the desired chain is written as names with optional `:object` or
/// `=config` versions and an optional `+entries` version of its entry-safe table;
/// expected is one action letter per desired cube, then removed cubes (+ add,
/// r replace, ~ relink, u entries updated in place, . keep, - remove) and the
/// chain's action.
struct PlannerCase: CustomTestStringConvertible, Sendable {
    let desired: String
    let expected: String
    let chain: ChainChange.Action
    var testDescription: String { "\(desired) => \(expected)" }

    init(_ desired: String, _ expected: String, _ chain: ChainChange.Action = .update) {
        self.desired = desired
        self.expected = expected
        self.chain = chain
    }

    func topology() -> [(String, CubeBlueprint)] {
        desired.split(separator: " ").map { token in
            var name = String(token), object: UInt8 = 1, config: UInt8 = 0, entries: UInt8 = 0
            if let plus = name.firstIndex(of: "+") {
                entries = UInt8(name[name.index(after: plus)...]) ?? 0
                name = String(name[..<plus])
            }
            if let colon = name.firstIndex(of: ":") {
                object = UInt8(name[name.index(after: colon)...]) ?? 1
                name = String(name[..<colon])
            } else if let equals = name.firstIndex(of: "=") {
                config = UInt8(name[name.index(after: equals)...]) ?? 0
                name = String(name[..<equals])
            }
            return (name, blueprint(object, config: config, entries: entries))
        }
    }
}

let plannerCases: [PlannerCase] = [
    // unchanged
    .init("a b c d", "....", .none),
    // replace by object or config, anywhere, several
    .init("a:2 b c d", "r..."), .init("a b:2 c d", ".r.."), .init("a b c d:2", "...r"),
    .init("a=5 b c d", "r..."), .init("a b=5 c d", ".r.."), .init("a b c=5 d", "..r."),
    .init("a:2 b:2 c d", "rr.."), .init("a b c:3 d:3", "..rr"), .init("a:2 b:2 c:2 d:2", "rrrr"),
    .init("a=1 b=2 c=3 d=4", "rrrr"), .init("a:2 b=2 c d", "rr.."),
    // insertions
    .init("x a b c d", "+...."), .init("a x b c d", "~+..."), .init("a b x c d", ".~+.."),
    .init("a b c x d", "..~+."), .init("a b c d x", "...~+"), .init("x y a b c d", "++...."),
    .init("a x y b c d", "~++..."), .init("a b c d x y", "...~++"), .init("x a b c d y", "+...~+"),
    // removals
    .init("b c d", "...-"), .init("a c d", "~..-"), .init("a b d", ".~.-"), .init("a b c", "..~-"),
    .init("a d", "~.--"), .init("d", ".---"), .init("a", "~---"), .init("c d", "..--"),
    // reorders
    .init("b a c d", "~~.."), .init("a c b d", "~~~."), .init("a b d c", ".~~~"), .init("d c b a", "~~~~"),
    .init("b c d a", "..~~"),
    // mixed
    .init("a:2 x b c d", "r+..."), .init("a b:2 d", ".r.-"), .init("x b c:2 d", "+.r.-"),
    .init("a c:3 b", "~r~-"), .init("y:4 d c", "+~~--"), .init("a=9 b c x:7", "r.~+-"),
    .init("a b c d e f g h", "...~++++"), .init("h g f e d c b a", "++++~~~~"),
    .init("a c", "~~--"), .init("d:2 c b a", "r~~~"), .init("a:2 b:2 c:2 d:2 x", "rrrr+"),
    .init("x", "+----"),
    // entries of entry-safe tables: in place, unless the instance is replaced or moved anyway
    .init("a+1 b c d", "u..."), .init("a b c d+2", "...u"), .init("a+1 b+1 c+1 d+1", "uuuu"),
    .init("a+1 b:2 c d", "ur.."), .init("a:2+1 b c d", "r..."), .init("a=3+1 b c d", "r..."),
    .init("b+1 a c d", "~~.."), .init("a+1 x b c d", "~+..."), .init("a b+4 d", ".~.-"),
]

@Suite("planner table")
struct PlannerTableTests {
    static let live = Result { try observed(desired([("a", blueprint(1)), ("b", blueprint(1)), ("c", blueprint(1)),
                                                      ("d", blueprint(1))])) }

    @Test("the planner picks the cheapest correct action for every cube", arguments: plannerCases)
    func plan(_ testCase: PlannerCase) throws {
        let plan = Planner.plan(desired: [desired(testCase.topology())], observed: [try Self.live.get()])
        let change = try #require(plan.chains.first)
        let letters = change.cubes.map { cube -> Character in
            switch cube.action {
            case .add: "+"
            case .replace: "r"
            case .relink: "~"
            case .update: "u"
            case .keep: "."
            case .remove: "-"
            }
        }
        #expect(String(letters) == testCase.expected)
        #expect(change.action == testCase.chain)
        let count = { (c: Character) in testCase.expected.filter { $0 == c }.count }
        #expect(plan.summary == Plan.Summary(add: count("+"), change: count("~") + count("u"), replace: count("r"),
                                             destroy: count("-")))
    }

    @Test("with the other planner suites, at least 50 cases")
    func size() { #expect(plannerCases.count >= 45) }
}
