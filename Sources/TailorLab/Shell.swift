import Foundation

/// Runs a system tool (`ip`, `sysctl`) with `input` on its standard input, and
/// returns its standard output; a non-zero exit throws with the command and its
/// standard error.
@discardableResult
public func run(_ tool: String, _ arguments: [String], input: String? = nil) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [tool] + arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let stdin = input.map { _ in Pipe() }
    if let stdin { process.standardInput = stdin }
    try process.run()
    if let stdin, let input {
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
    }
    let output = out.fileHandleForReading.readDataToEndOfFile()
    let error = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw CommandFailed(command: ([tool] + arguments).joined(separator: " "),
                            status: process.terminationStatus,
                            stderr: String(decoding: error, as: UTF8.self))
    }
    return String(decoding: output, as: UTF8.self)
}

/// A tool exited with an error.
public struct CommandFailed: Error, CustomStringConvertible {
    public let command: String
    public let status: Int32
    public let stderr: String

    public init(command: String, status: Int32, stderr: String) {
        (self.command, self.status, self.stderr) = (command, status, stderr)
    }

    public var description: String { "`\(command)` exited \(status): \(stderr)" }
}
