import Foundation
import Glibc
import Logging
import TailorKernel

/// Calls `onAppear` when an interface a pending chain waits for appears, so the
/// chain is applied then rather than at the next interval: a link-event socket
/// (`LinkEvents`) per namespace that holds an awaited interface, read on a thread
/// of its own. A namespace whose socket cannot be opened falls back to the
/// interval (logged once); one that does not exist yet, or was deleted or made
/// anew under its socket, is tried again every poll, so its interfaces are found
/// soon after it is made.
final class InterfaceWatcher: @unchecked Sendable {
    private let lock = NSLock()
    private var awaited: Set<Reconciler.AwaitedInterface> = []
    /// Bumped by every `wait(for:)`: the thread then looks whether the interfaces
    /// are there already (they may have come while the reconcile ran, before a
    /// socket listened for them).
    private var generation = 0
    /// Set once `onAppear` was called for the current set, so that the messages of
    /// one interface coming up make one reconcile, not several.
    private var fired = false
    private var running = true
    private let done = DispatchSemaphore(value: 0)
    private let logger: Logger
    private let onAppear: @Sendable () -> Void

    init(logger: Logger, onAppear: @escaping @Sendable () -> Void) {
        self.logger = logger
        self.onAppear = onAppear
        Thread.detachNewThread { [self] in loop() }
    }

    /// Waits for `interfaces` from now on, instead of what it waited for before.
    func wait(for interfaces: Set<Reconciler.AwaitedInterface>) {
        lock.withLock {
            (awaited, fired) = (interfaces, false)
            generation += 1
        }
    }

    /// Stops watching; returns once the thread is done (its sockets closed).
    func stop() {
        lock.withLock { running = false }
        done.wait()
    }

    private func fire() {
        let first = lock.withLock {
            defer { fired = true }
            return !fired
        }
        if first { onAppear() }
    }

    private func loop() {
        var sockets: [String?: LinkEvents] = [:]
        var unavailable: Set<String?> = []
        var seen = 0
        while true {
            let (running, awaited, generation) = lock.withLock { (self.running, self.awaited, self.generation) }
            guard running else { break }
            let namespaces = Set(awaited.map(\.namespace))
            sockets = sockets.filter { namespaces.contains($0.key) && $0.value.isCurrent }
            var opened = false
            for namespace in namespaces where sockets[namespace] == nil {
                do {
                    sockets[namespace] = try LinkEvents(in: namespace.map(NetworkNamespace.named))
                    unavailable.remove(namespace)
                    opened = true
                } catch let error as KernelError where error.code == .notFound {
                    continue  // the namespace is not there yet; the chain's log line says so
                } catch {
                    guard unavailable.insert(namespace).inserted else { continue }
                    logger.warning("link events unavailable: pending chains wait for the interval", metadata: [
                        "namespace": "\(namespace ?? "-")", "error": "\(error)",
                    ])
                }
            }
            if opened || generation != seen {
                seen = generation
                if awaited.contains(where: { $0.missing == nil }) { fire() }
            }
            var descriptors = sockets.values.map { pollfd(fd: $0.descriptor, events: Int16(POLLIN), revents: 0) }
            let ready = descriptors.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), 200) }
            guard ready > 0 else { continue }
            for (namespace, socket) in sockets
            where descriptors.contains(where: { $0.fd == socket.descriptor && $0.revents != 0 }) {
                do {
                    let (names, lost) = try socket.receive()
                    if lost || awaited.contains(where: { $0.namespace == namespace && names.contains($0.name) }) { fire() }
                } catch {
                    logger.warning("link events unreadable", metadata: ["namespace": "\(namespace ?? "-")",
                                                                         "error": "\(error)"])
                    sockets[namespace] = nil
                }
            }
        }
        sockets.removeAll()
        done.signal()
    }
}
