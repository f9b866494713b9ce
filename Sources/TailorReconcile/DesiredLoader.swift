import TailorCubes
import TailorDatapath
import TailorSpec

extension DesiredChain {
    /// The desired state of spec files or directories: every chain that loaded
    /// with its cubes' blueprints, and the diagnostics. With errors among them,
    /// the chains are not a desired state anyone should apply.
    public static func load(_ paths: [String]) -> (chains: [DesiredChain], diagnostics: Diagnostics) {
        let (state, diagnostics) = SpecLoader(cubeTypes: CubeType.schemas).load(paths)
        var all = diagnostics
        var chains: [DesiredChain] = []
        for chain in state?.chains ?? [] {
            if let (settings, topology) = chain.datapath(diagnostics: &all) {
                chains.append(DesiredChain(settings: settings, topology: topology, suspend: chain.suspend,
                                           repairDrift: chain.repairDrift))
            }
        }
        return (chains, all)
    }
}
