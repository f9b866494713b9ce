/// Prints a plan the way `terraform plan` does: a legend, drift first, chains to be
/// destroyed next under a loud header, per chain and cube what changes and why, and
/// a summary line.
public enum PlanText {
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
            lines.append("  # chain \"\(chain.name)\" \(verb) (\(chain.hook))")
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
}
