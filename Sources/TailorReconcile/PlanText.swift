import TailorDatapath

/// Prints a plan the way `terraform plan` does: a legend, drift first, chains to be
/// destroyed next under a loud header, per chain and cube what changes and why (its
/// config attribute by attribute), and a summary line.
public enum PlanText {
    /// Attribute changes shown per cube without -v; the rest are counted.
    static let changesShown = 100
    /// A value longer than this is shown item by item, and a created cube's list
    /// of more items than `itemsShown` as a count (all of them with -v).
    static let lineWidth = 100
    static let itemsShown = 10

    public static func render(_ plan: Plan, color: Bool, verbose: Bool = false) -> String {
        let paint = { (code: String, text: String) in color ? "\u{1b}[\(code)m\(text)\u{1b}[0m" : text }
        let symbol = { (action: CubeChange.Action) -> String in
            switch action {
            case .add: paint("32", "+")
            case .replace: paint("33", "-/+")
            case .relink, .update: paint("33", "~")
            case .remove: paint("31", "-")
            case .keep: " "
            }
        }
        var lines: [String] = []
        let drifted = plan.chains.filter { !$0.drift.isEmpty }
        if !drifted.isEmpty {
            lines.append(paint("1", "Drift found in the kernel:"))
            for chain in drifted {
                for drift in chain.drift { lines.append("  chain \(chain.name): \(drift)") }
            }
            lines.append("")
        }
        if plan.isEmpty {
            lines.append(paint("1;32", "No changes.") + " The kernel matches the specs.")
            for chain in plan.chains where chain.action == .skip {
                lines.append("  chain \(chain.name): skipped (\(chain.reasons.joined(separator: "; ")))")
            }
            return lines.joined(separator: "\n")
        }
        lines.append("Symbols: \(symbol(.add)) create  \(symbol(.relink)) update in place  "
                     + "\(symbol(.replace)) replace  \(symbol(.remove)) destroy")
        lines.append("")
        // Destroys come first, under a line that cannot be overlooked.
        let destroyed = plan.chains.filter(\.destroysChain)
        if !destroyed.isEmpty {
            lines.append(paint("1;31", "\(destroyed.count) chain\(destroyed.count == 1 ? "" : "s") will be DESTROYED:"))
        }
        for chain in destroyed + plan.chains.filter({ !$0.destroysChain }) where chain.action != .none {
            let (mark, verb): (String, String) = switch chain.action {
            case .create: (symbol(.add), "will be created")
            case .update: (symbol(.relink), "will be updated in place")
            case .replace: (symbol(.replace), "must be replaced")
            case .destroy: (symbol(.remove), "will be destroyed")
            case .repair: (symbol(.relink), "will be repaired from its pins")
            case .skip: (" ", "is skipped")
            case .none: (" ", "is unchanged")
            }
            lines.append("  # chain \"\(chain.name)\" \(verb) (\(chain.hook?.description ?? "?"))")
            for reason in chain.reasons { lines.append("  # " + reason) }
            guard chain.action != .skip, chain.action != .repair else {
                if chain.action == .repair { for drift in chain.drift { lines.append("  \(mark) repair: \(drift)") } }
                lines.append("")
                continue
            }
            lines.append("  \(mark) chain \"\(chain.name)\" {")
            for cube in chain.cubes where cube.action != .keep || verbose {
                let why = cube.reasons.isEmpty ? "" : "   # " + cube.reasons.joined(separator: "; ")
                let forces = cube.action == .replace ? paint("31", " (forces replacement)") : ""
                lines.append("      \(symbol(cube.action)) cube \"\(cube.name)\" (\(cube.type))\(why)\(forces)")
                lines += values(cube, paint: paint, verbose: verbose)
                if verbose { for delta in cube.tables { lines += delta.entries.map { "          \($0)" } } }
                // What a replacement carries over unchanged, in one line (each map with -v).
                let kept = cube.state.filter { $0.action == .kept }.map(\.map)
                if !verbose && !kept.isEmpty { lines.append("          state kept: " + kept.joined(separator: ", ")) }
                for state in cube.state where state.action != .kept || verbose {
                    let mark = state.action == .refused ? paint("31", "!") : " "
                    lines.append("        \(mark) state \"\(state.map)\": \(state.action.rawValue)"
                                 + (state.entries.map { " \($0) entries" } ?? "")
                                 + (state.detail.isEmpty ? "" : " (\(state.detail))"))
                }
            }
            let kept = chain.cubes.filter { $0.action == .keep }.count
            if kept > 0 && !verbose { lines.append("        (\(kept) unchanged cube\(kept == 1 ? "" : "s") hidden)") }
            lines.append("    }")
            lines.append("")
        }
        for refusal in plan.refusals { lines.append(paint("31", "Refused: ") + refusal) }
        if !plan.refusals.isEmpty { lines.append("") }
        let s = plan.summary
        lines.append(paint("1", "Plan:") + " \(s.add) to add, \(s.change) to change, \(s.replace) to replace, "
                     + "\(s.destroy) to destroy" + (s.repair > 0 ? ", \(s.repair) to repair." : "."))
        return lines.joined(separator: "\n")
    }

    /// The lines under a cube that say what its config changes: attribute by
    /// attribute, then how many items of each list stay; or why that is unknown.
    static func values(_ cube: CubeChange, paint: (String, String) -> String, verbose: Bool) -> [String] {
        let indent = "          "
        if let why = cube.valuesUnavailable { return [indent + "# config values not shown: " + why] }
        var lines: [String] = []
        let shown = verbose ? cube.changes : Array(cube.changes.prefix(changesShown))
        for change in shown {
            let forces = change.forcesReplacement ? paint("31", "   # forces replacement") : ""
            let moved = change.formerPath.map { " (was \($0))" } ?? ""
            switch change.action {
            case .change:
                lines.append(indent + paint("33", "~") + " \(change.path): \(change.before?.flow ?? "?") -> "
                             + "\(change.after?.flow ?? "?")\(moved)\(forces)")
            case .add, .remove:
                let (mark, value) = change.action == .add ? (paint("32", "+"), change.after) : (paint("31", "-"), change.before)
                lines += item(mark, change.path, value, collapse: cube.action == .add && !verbose)
                    .map { indent + $0 + moved + forces }
            }
        }
        if cube.changes.count > shown.count {
            lines.append(indent + "  ... \(grouped(cube.changes.count - shown.count)) more changes (-v shows all)")
        }
        for (path, count) in cube.unchanged.sorted(by: { $0.key < $1.key }) {
            lines.append(indent + "  (\(grouped(count)) \(noun(path, count: count)) unchanged)")
        }
        return lines
    }

    /// An added or removed value at `path`: on one line when it fits, else item by
    /// item, or (a created cube's long list, without -v) as a count. A set member
    /// or map entry whose key is its value shows the key only.
    static func item(_ mark: String, _ path: String, _ value: ConfigDocument?, collapse: Bool) -> [String] {
        guard let value else { return ["\(mark) \(path)"] }
        let count = value.items?.count ?? value.members?.count ?? 0
        // Counted before it is written out: a created firewall's rules make a megabyte.
        if collapse && count > itemsShown {
            return ["\(mark) \(path): \(grouped(count)) \(noun(path, count: count)) (-v lists them)"]
        }
        let flow = value.flow
        if path.hasSuffix("[" + ConfigDocument.quoted(flow) + "]") { return ["\(mark) \(path)"] }
        guard flow.count > lineWidth, value.isContainer else { return ["\(mark) \(path): \(flow)"] }
        switch value {
        case .list(let items):
            return items.enumerated().flatMap { item(mark, "\(path)[\($0.offset)]", $0.element, collapse: collapse) }
        case .set(let items):
            return items.flatMap { item(mark, "\(path)[\(ConfigDocument.quoted($0.flow))]", $0, collapse: collapse) }
        case .map:
            return (value.members ?? []).flatMap { item(mark, "\(path)[\(ConfigDocument.quoted($0.name))]", $0.value, collapse: collapse) }
        default:
            return (value.members ?? []).flatMap { item(mark, "\(path).\($0.name)", $0.value, collapse: collapse) }
        }
    }

    /// What `count` items of the list at `path` are called: `rules`, `1 rule`, `drop entries`.
    static func noun(_ path: String, count: Int) -> String {
        let name = String(path.split(whereSeparator: { ".[]\"".contains($0) }).last ?? "")
        guard name.hasSuffix("s") else { return name + (count == 1 ? " entry" : " entries") }
        return count == 1 ? String(name.dropLast()) : name
    }

    /// 9999 as "9,999".
    static func grouped(_ number: Int) -> String {
        let digits = Array(String(number))
        return String(digits.enumerated().flatMap { index, digit in
            index > 0 && (digits.count - index) % 3 == 0 ? [",", digit] : [digit]
        })
    }
}
