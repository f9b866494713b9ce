import Foundation
import Prometheus
import Synchronization
import TailorKernel

/// What `tailor run` tells Prometheus about its reconcile loop, kept from one
/// reconcile to the next, plus the cube counters read from the kernel at each
/// scrape (`CubeMetrics`). The names, labels and meanings are in docs/daemon.md.
///
/// The metrics are made on swift-prometheus's registry (whose types are
/// swift-metrics handlers) rather than through swift-metrics' global factory: only
/// the registry carries the `# HELP` text that promtool and Prometheus users
/// expect, and a registry of the daemon's own keeps tests free of global state.
public final class DaemonMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let pinRoot: PinRoot
    private let duration: DurationHistogram
    private let lastSuccess: Gauge
    private let specErrors: Gauge
    /// The cubes the last reconcile saw, whose counters each scrape reads.
    private let cubes = Mutex<[LiveCube]>([])
    /// The series of `tailor_spec_info`, replaced when the revision changes.
    private let specInfo = Mutex<(revision: String, gauge: Gauge)?>(nil)

    static let durationBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
        .seconds(30), .seconds(60),
    ]

    public init(pinRoot: PinRoot) {
        self.pinRoot = pinRoot
        duration = registry.makeDurationHistogram(
            descriptor: .gauge("tailor_reconcile_duration_seconds",
                               "How long each reconcile took: reading the specs, observing, planning and applying."),
            buckets: Self.durationBuckets)
        lastSuccess = registry.makeGauge(descriptor: .gauge(
            "tailor_last_successful_apply_timestamp_seconds",
            "When the last reconcile that left every chain as the specs want it (or pending) ended, "
                + "in seconds since the epoch; 0 until one has."))
        specErrors = registry.makeGauge(descriptor: .gauge(
            "tailor_spec_errors", "Errors in the spec directory at the last reconcile (0: it is valid)."))
        // Every state has a series from the start, so an alert on one needs no absent().
        ChainStates.set(Reconciler.Outcome().chainStates, in: registry)
    }

    /// Counts a reconcile that ran for `reason` and took `elapsed`, ending at `now`.
    public func record(_ outcome: Reconciler.Outcome, reason: String, elapsed: Duration, now: Date = Date()) {
        registry.makeCounter(descriptor: .counter("tailor_reconciles", "Reconciles, by what started them and how they ended."),
                             labels: [("reason", reason), ("outcome", outcome.conclusion.rawValue)])
            .increment()
        duration.record(elapsed)
        for chain in outcome.failedApplies {
            registry.makeCounter(descriptor: .counter("tailor_chain_apply_errors",
                                                      "Applies of a chain that failed (each is retried after a backoff)."),
                                 labels: [("chain", chain)])
                .increment()
        }
        for repair in outcome.repairs {
            registry.makeCounter(descriptor: .counter("tailor_drift_repairs",
                                                      "Drift put back, by chain and kind (the journal's DRIFT_KIND)."),
                                 labels: [("chain", repair.chain), ("kind", repair.kind.rawValue)])
                .increment()
        }
        ChainStates.set(outcome.chainStates, in: registry)
        specErrors.set(Int64(outcome.specErrors))
        if outcome.conclusion == .ok { lastSuccess.set(now.timeIntervalSince1970) }
        if let live = outcome.cubes { cubes.withLock { $0 = live } }
        setRevision(outcome.revision?.description)
    }

    /// `tailor_spec_info{revision}`: one series for the revision last read, none
    /// while it is unknown (specs outside git, or a revision git cannot read).
    private func setRevision(_ revision: String?) {
        specInfo.withLock { current in
            guard current?.revision != revision else { return }
            if let current { registry.unregisterGauge(current.gauge) }
            current = revision.map { revision in
                let gauge = registry.makeGauge(
                    descriptor: .gauge("tailor_spec_info", "The git revision of the spec directory at the last reconcile."),
                    labels: [("revision", revision)])
                gauge.set(Int64(1))
                return (revision, gauge)
            }
        }
    }

    /// The text a scrape of `/metrics` answers: the loop's metrics, then the
    /// counters of the cubes the last reconcile saw, read now.
    public func exposition() -> [UInt8] {
        var text = registry.emitToBuffer()
        let cubeRegistry = PrometheusCollectorRegistry()
        CubeMetrics.add(cubes.withLock { $0 }, pinRoot: pinRoot, to: cubeRegistry)
        cubeRegistry.emit(into: &text)
        return text
    }
}
