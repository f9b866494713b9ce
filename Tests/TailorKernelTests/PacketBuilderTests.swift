import Testing
import TailorLab
import TailorTestKit

@Suite("packet builder")
struct PacketBuilderTests {
    /// Folding a header with its checksum in place gives zero.
    @Test("IPv4 header and UDP/TCP/ICMP checksums verify")
    func checksumsVerify() {
        for transport: PacketBuilder.Transport in [.udp(sport: 1000, dport: 53), .tcp(sport: 1, dport: 80, flags: [.syn, .ack]),
                                                   .icmpEcho(id: 7, sequence: 9)] {
            let frame = PacketBuilder(from: "192.168.1.10", to: "10.1.2.3", transport, payload: [9, 8, 7]).bytes
            #expect(Array(frame[12..<14]) == [0x08, 0x00])
            let ip = Array(frame[14..<34])
            #expect(PacketBuilder.checksum(ip) == 0)
            let segment = Array(frame[34...])
            let pseudo: [UInt8] = ip[9] == 1 ? [] : Array(ip[12..<20]) + [0, ip[9], 0, UInt8(segment.count)]
            #expect(PacketBuilder.checksum(pseudo + segment) == 0)
        }
    }

    @Test("IPv6 frames carry the next header and a verifying checksum")
    func ipv6() {
        let frame = PacketBuilder(from: "fd00::1", to: "fd00:99::2", .icmpEcho(id: 1, sequence: 2)).bytes
        #expect(Array(frame[12..<14]) == [0x86, 0xdd])
        #expect(frame[20] == 58)
        #expect(Array(frame[38..<54]) == [0xfd, 0, 0, 0x99] + Array(repeating: 0, count: 11) + [2])
        let segment = Array(frame[54...])
        let pseudo = Array(frame[22..<54]) + [0, 0, 0, UInt8(segment.count), 0, 0, 0, 58]
        #expect(PacketBuilder.checksum(pseudo + segment) == 0)
    }
}
