import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// Where the metrics server listens: `HOST:PORT`, the host an IPv4 address, a
/// name (`localhost`), or an IPv6 address in brackets (`[::1]:9842`). There is no
/// default host: serving on every interface must be asked for (`0.0.0.0:9842`,
/// `[::]:9842`).
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    /// Parses `text`, or throws what is wrong with it in words a person can act on.
    public init(_ text: String) throws(ListenAddressError) {
        let example = "e.g. 127.0.0.1:9842 or [::1]:9842"
        guard let colon = text.lastIndex(of: ":") else {
            throw ListenAddressError("'\(text)' has no port: give HOST:PORT, \(example)")
        }
        var host = String(text[..<colon])
        let port = String(text[text.index(after: colon)...])
        guard port.allSatisfy({ $0.isASCII && $0.isNumber }), let number = Int(port), (1...65535).contains(number)
        else {
            throw ListenAddressError("'\(port)' in '\(text)' is not a port (1 to 65535): give HOST:PORT, \(example)")
        }
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
            guard Self.isIPv6(host) else { throw ListenAddressError("'\(host)' in '\(text)' is not an IPv6 address") }
        } else if host.contains(":") {
            throw ListenAddressError("an IPv6 address goes in brackets: '[\(host)]:\(port)'")
        } else if host.isEmpty {
            throw ListenAddressError("'\(text)' has no host: give 127.0.0.1:\(port) for this host only, "
                                     + "0.0.0.0:\(port) or [::]:\(port) for every interface")
        } else if host.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }) {
            var address = in_addr()
            guard inet_pton(AF_INET, host, &address) == 1 else {
                throw ListenAddressError("'\(host)' in '\(text)' is not an IPv4 address")
            }
        } else {
            let name = host.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") }
            guard name else { throw ListenAddressError("'\(host)' in '\(text)' is not an IP address or host name") }
        }
        (self.host, self.port) = (host, number)
    }

    static func isIPv6(_ text: String) -> Bool {
        var address = in6_addr()
        return inet_pton(AF_INET6, text, &address) == 1
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A malformed `--metrics-address`.
public struct ListenAddressError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The metrics server could not listen: the daemon stops before it applies anything.
public struct MetricsServerError: Error, CustomStringConvertible {
    public let description: String
}

/// `tailor run --metrics-address`: an HTTP/1.1 server (swift-nio) answering
/// `GET /metrics` with the Prometheus text format, one service of the daemon's
/// ServiceGroup.
///
/// It is bound by `bind` before the service group starts, so a port in use (or
/// one below 1024 without CAP_NET_BIND_SERVICE) stops the daemon with a clear
/// error before its first reconcile and before READY=1, instead of a daemon that
/// applies specs and then fails half-started. On graceful shutdown it stops
/// accepting, cuts idle keep-alive connections and returns, so the daemon exits 0.
public struct MetricsServer: Service {
    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    private let listener: NIOAsyncChannel<Connection, Never>
    private let eventLoops: MultiThreadedEventLoopGroup
    private let metrics: DaemonMetrics
    private let logger: Logger

    /// Listens on `address`; throws `MetricsServerError` when it cannot.
    public static func bind(_ address: ListenAddress, metrics: DaemonMetrics, logger: Logger) async throws
        -> MetricsServer {
        // One thread: a scrape every few seconds needs no more, and an idle daemon keeps few threads.
        let eventLoops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            let listener = try await ServerBootstrap(group: eventLoops)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: address.host, port: address.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        return try Connection(wrappingChannelSynchronously: channel)
                    }
                }
            logger.notice("metrics server listening", metadata: ["address": "\(address)"])
            return MetricsServer(listener: listener, eventLoops: eventLoops, metrics: metrics, logger: logger)
        } catch {
            await shutDown(eventLoops, logger)
            throw MetricsServerError(description: Self.explain(error, address))
        }
    }

    /// What went wrong in binding, with what to do about it.
    static func explain(_ error: any Error, _ address: ListenAddress) -> String {
        let prefix = "cannot serve metrics on \(address) (--metrics-address)"
        switch (error as? IOError)?.errnoCode {
        case EADDRINUSE:
            return "\(prefix): the port is in use by another process (`ss -ltnp 'sport = :\(address.port)'` "
                + "shows which); choose another port or stop that process"
        case EACCES:
            return "\(prefix): permission denied; ports below 1024 need CAP_NET_BIND_SERVICE, which the unit "
                + "does not grant: choose a port of 1024 or above"
        case EADDRNOTAVAIL:
            return "\(prefix): no interface of this host has that address"
        default:
            return "\(prefix): \(error)"
        }
    }

    public func run() async throws {
        do {
            try await acceptConnections()
        } catch {
            await shutDown(eventLoops, logger)
            throw error
        }
        await shutDown(eventLoops, logger)
    }

    private func acceptConnections() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            try await withGracefulShutdownHandler {
                try await listener.executeThenClose { connections in
                    for try await connection in connections {
                        group.addTask { await serve(connection) }
                    }
                }
            } onGracefulShutdown: {
                listener.channel.close(promise: nil)
            }
            // No new scrapes come: idle keep-alive connections are cut, not waited for.
            group.cancelAll()
        }
    }

    /// Answers the requests of one connection until the client closes it (or asks
    /// to), or the server stops. A broken connection is the client's loss only.
    private func serve(_ connection: Connection) async {
        do {
            try await connection.executeThenClose { requests, responses in
                var head: HTTPRequestHead?
                for try await part in requests {
                    switch part {
                    case .head(let request):
                        head = request
                    case .body:
                        continue
                    case .end:
                        guard let request = head else { return }
                        try await respond(to: request, responses)
                        if !request.isKeepAlive { return }
                    }
                }
            }
        } catch {
            logger.debug("metrics connection closed", metadata: ["error": "\(error)"])
        }
    }

    private func respond(to request: HTTPRequestHead, _ responses: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>)
        async throws {
        let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.uri
        let (status, body, type): (HTTPResponseStatus, [UInt8], String) = switch (request.method, path) {
        case (.GET, "/metrics"), (.HEAD, "/metrics"):
            (.ok, metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8")
        case (_, "/metrics"):
            (.methodNotAllowed, Array("only GET and HEAD\n".utf8), "text/plain; charset=utf-8")
        default:
            (.notFound, Array("tailor serves /metrics only\n".utf8), "text/plain; charset=utf-8")
        }
        var headers = HTTPHeaders([("Content-Type", type), ("Content-Length", "\(body.count)")])
        if status == .methodNotAllowed { headers.add(name: "Allow", value: "GET, HEAD") }
        if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
        try await responses.write(.head(HTTPResponseHead(version: request.version, status: status, headers: headers)))
        if request.method != .HEAD { try await responses.write(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
        try await responses.write(.end(nil))
    }
}

/// Stops the server's event loop thread; a failure is logged, as there is nothing else to do about it.
private func shutDown(_ eventLoops: MultiThreadedEventLoopGroup, _ logger: Logger) async {
    do {
        try await eventLoops.shutdownGracefully()
    } catch {
        logger.warning("metrics server thread did not stop", metadata: ["error": "\(error)"])
    }
}
