/* Connection state without a table: the TCP state machine (SYN, SYN-ACK,
 * established, FIN, RST), Linux conntrack's timeouts for TCP, UDP, ICMP and other
 * protocols (nf_conntrack_proto_*.c), TCP flag validity and the kinds of ICMP
 * messages. Cubes that keep connections in a map of their own include this alone:
 * the firewall's `conntrack` map comes with <tailor/conntrack.h>, the NAT cube's
 * `translations` with the cube. docs/cubes/firewall.md describes the semantics. */
#pragma once

#include <tailor/cube.h>
#include <linux/in.h>
#include <linux/in6.h>

/* Connection states as iptables' `-m conntrack --ctstate` names them. */
enum tailor_ct_state {
    TAILOR_CT_NEW = 0,
    TAILOR_CT_ESTABLISHED = 1,
    TAILOR_CT_RELATED = 2,
    TAILOR_CT_INVALID = 3,
    TAILOR_CT_UNTRACKED = 4,   /* never tracked: IPv6 neighbour discovery and MLD */
};

/* TCP states (a subset of nf_conntrack's, the same timeouts). */
enum tailor_tcp_state {
    TCP_CT_NONE = 0,
    TCP_CT_SYN_SENT = 1,
    TCP_CT_SYN_RECV = 2,
    TCP_CT_ESTABLISHED = 3,
    TCP_CT_FIN_WAIT = 4,   /* one side sent FIN */
    TCP_CT_LAST_ACK = 5,   /* both sides sent FIN */
    TCP_CT_TIME_WAIT = 6,
    TCP_CT_CLOSE = 7,      /* reset */
};

/* The time connection state is kept in: CLOCK_MONOTONIC in ns, as of the last
 * tick (bpf_ktime_get_coarse_ns). Timeouts are seconds long, so a tick's lag
 * changes nothing, and the coarse clock costs no clock read per packet (reading
 * the TSC was 3 % of a gateway packet's time in a VM). */
static __always_inline __u64 tailor_ct_now(void) {
    return bpf_ktime_get_coarse_ns();
}

/* One connection's state. */
struct tailor_ct_entry {
    __u64 expires;    /* tailor_ct_now() past which the entry is dead */
    __u8 tcp_state;   /* enum tailor_tcp_state, TCP only */
    __u8 orig_is_a;   /* the originator is endpoint a (of the firewall's canonical key) */
    __u8 seen_reply;  /* a packet went the other way */
    __u8 fin;         /* FIN seen: bit 0 from the originator, bit 1 from the replier */
    __u32 pad;
};

#define TAILOR_SEC 1000000000ull

/* Timeouts (seconds), Linux's defaults. */
static __always_inline __u64 tailor_ct_tcp_timeout(__u8 state) {
    switch (state) {
    case TCP_CT_SYN_SENT: return 120 * TAILOR_SEC;
    case TCP_CT_SYN_RECV: return 60 * TAILOR_SEC;
    case TCP_CT_ESTABLISHED: return 432000 * TAILOR_SEC;
    case TCP_CT_FIN_WAIT: return 120 * TAILOR_SEC;
    case TCP_CT_LAST_ACK: return 30 * TAILOR_SEC;
    case TCP_CT_TIME_WAIT: return 120 * TAILOR_SEC;
    default: return 10 * TAILOR_SEC;
    }
}

#define TAILOR_CT_UDP_TIMEOUT (30 * TAILOR_SEC)
#define TAILOR_CT_UDP_STREAM_TIMEOUT (120 * TAILOR_SEC)
#define TAILOR_CT_ICMP_TIMEOUT (30 * TAILOR_SEC)
#define TAILOR_CT_GENERIC_TIMEOUT (600 * TAILOR_SEC)

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10
#define TCP_URG 0x20
#define TCP_ECE 0x40
#define TCP_CWR 0x80

/* Flag combinations conntrack accepts (nf_conntrack_proto_tcp.c tcp_valid_flags,
 * ECE, CWR and PSH ignored); any other is INVALID. */
static __always_inline int tailor_tcp_flags_valid(__u8 flags) {
    switch (flags & ~(TCP_ECE | TCP_CWR | TCP_PSH)) {
    case TCP_SYN:
    case TCP_SYN | TCP_URG:
    case TCP_SYN | TCP_ACK:
    case TCP_RST:
    case TCP_RST | TCP_ACK:
    case TCP_FIN | TCP_ACK:
    case TCP_FIN | TCP_ACK | TCP_URG:
    case TCP_ACK:
    case TCP_ACK | TCP_URG:
        return 1;
    default:
        return 0;
    }
}

/* ICMP types: echo requests open a connection, echo replies belong to one,
 * errors are RELATED to the connection whose packet they quote. */
static __always_inline int tailor_icmp_is_request(__u8 family, __u8 type) {
    return family == 4 ? (type == 8 || type == 13 || type == 15 || type == 17) : (type == 128 || type == 139);
}

static __always_inline int tailor_icmp_is_reply(__u8 family, __u8 type) {
    return family == 4 ? (type == 0 || type == 14 || type == 16 || type == 18) : (type == 129 || type == 140);
}

/* ICMPv6 messages conntrack leaves untracked (nf_conntrack_proto_icmpv6.c
 * noct_valid_new): MLD queries and reports, router and neighbour solicitations and
 * advertisements. */
static __always_inline int tailor_icmp_is_untracked(__u8 family, __u8 type) {
    return family == 6 && ((type >= 130 && type <= 136) || type == 143);
}

static __always_inline int tailor_icmp_is_error(__u8 family, __u8 type) {
    return family == 4 ? (type == 3 || type == 4 || type == 5 || type == 11 || type == 12) : (type >= 1 && type <= 4);
}

/* The TCP state after an accepted packet, as nf_conntrack moves it (without
 * window tracking). */
static __always_inline __u8 tailor_tcp_next(struct tailor_ct_entry *e, __u8 flags, int original) {
    __u8 state = e->tcp_state;
    if (flags & TCP_RST)
        return TCP_CT_CLOSE;
    if (flags & TCP_SYN) {
        if (!(flags & TCP_ACK))
            return state == TCP_CT_NONE ? TCP_CT_SYN_SENT : state;
        return !original && state == TCP_CT_SYN_SENT ? TCP_CT_SYN_RECV : state;
    }
    if (flags & TCP_FIN) {
        e->fin |= original ? 1 : 2;
        if (e->fin == 3)
            return TCP_CT_LAST_ACK;
        return state == TCP_CT_ESTABLISHED || state == TCP_CT_SYN_RECV ? TCP_CT_FIN_WAIT : state;
    }
    if (flags & TCP_ACK) {
        if (state == TCP_CT_SYN_RECV && original)
            return TCP_CT_ESTABLISHED;
        if (state == TCP_CT_LAST_ACK)
            return TCP_CT_TIME_WAIT;
    }
    return state;
}

/* Moves connection `e` on by a packet of it (`original`: from its originator) at
 * `now`: the reply seen, the TCP state, and when it expires. */
static __always_inline void tailor_ct_refresh(struct tailor_ct_entry *e, __u8 proto, __u8 tcp_flags, int original,
                                              __u64 now) {
    if (!original)
        e->seen_reply = 1;
    __u64 timeout;
    if (proto == IPPROTO_TCP) {
        e->tcp_state = tailor_tcp_next(e, tcp_flags, original);
        timeout = tailor_ct_tcp_timeout(e->tcp_state);
    } else if (proto == IPPROTO_UDP) {
        timeout = e->seen_reply ? TAILOR_CT_UDP_STREAM_TIMEOUT : TAILOR_CT_UDP_TIMEOUT;
    } else if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
        timeout = TAILOR_CT_ICMP_TIMEOUT;
    } else {
        timeout = TAILOR_CT_GENERIC_TIMEOUT;
    }
    e->expires = now + timeout;
}
