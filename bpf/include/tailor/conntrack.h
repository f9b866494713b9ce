/* Connection tracking for cubes: a state map of connections keyed by their
 * endpoints, a TCP state machine (SYN, SYN-ACK, established, FIN, RST) and
 * timeouts for TCP, UDP, ICMP and other protocols, following Linux conntrack's
 * defaults (nf_conntrack_proto_*.c) without sequence-number window checks.
 * Including this header gives the cube its `conntrack` map (state, carried into
 * a replacement). docs/cubes/firewall.md describes the semantics. */
#pragma once

#include <tailor/cube.h>
#include <tailor/parse.h>

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

/* A connection's endpoints in a canonical order (a before b, comparing address
 * then port), so both directions find the same entry. ICMP echo uses its id as
 * both ports; other protocols without ports use 0. */
struct tailor_ct_key {
    __u8 family;      /* 4 or 6 */
    __u8 proto;
    __u16 pad;
    __u8 a[16];
    __u8 b[16];
    __u16 a_port;     /* network order */
    __u16 b_port;
};

struct tailor_ct_entry {
    __u64 expires;    /* bpf_ktime_get_ns() past which the entry is dead */
    __u8 tcp_state;   /* enum tailor_tcp_state, TCP only */
    __u8 orig_is_a;   /* the originator is endpoint a */
    __u8 seen_reply;  /* a packet went the other way */
    __u8 fin;         /* FIN seen: bit 0 from the originator, bit 1 from the replier */
    __u32 pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 131072);
    __type(key, struct tailor_ct_key);
    __type(value, struct tailor_ct_entry);
} conntrack SEC(".maps") TAILOR_STATE;

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

/* Whether endpoint (x, xp) orders before (y, yp). */
static __always_inline int tailor_ct_before(const __u8 *x, __u16 xp, const __u8 *y, __u16 yp) {
    for (int i = 0; i < 16; i += 4) {
        __u32 u = bpf_ntohl(*(const __u32 *)(x + i)), v = bpf_ntohl(*(const __u32 *)(y + i));
        if (u != v)
            return u < v;
    }
    return bpf_ntohs(xp) <= bpf_ntohs(yp);
}

/* Fills `key` for a packet from (src, sport) to (dst, dport); returns whether the
 * sender is endpoint a. */
static __always_inline int tailor_ct_key_make(struct tailor_ct_key *key, __u8 family, __u8 proto,
                                              const __u8 *src, __u16 sport, const __u8 *dst, __u16 dport) {
    key->family = family;
    key->proto = proto;
    key->pad = 0;
    int from_a = tailor_ct_before(src, sport, dst, dport);
    __builtin_memcpy(key->a, from_a ? src : dst, 16);
    __builtin_memcpy(key->b, from_a ? dst : src, 16);
    key->a_port = from_a ? sport : dport;
    key->b_port = from_a ? dport : sport;
    return from_a;
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

/* What conntrack knows of the packet being looked at. */
struct tailor_ct_lookup {
    struct tailor_ct_key key;
    struct tailor_ct_entry *entry; /* the live entry, or NULL */
    __u64 now;                     /* bpf_ktime_get_ns() when the packet was looked up */
    __u8 state;                    /* enum tailor_ct_state */
    __u8 from_a;
    __u8 trackable;                /* an accepted packet may create or update an entry */
};

/* Offsets into the packet are masked to this so the verifier can bound them
 * (headers before the transport header take at most 14 + 8 + 60 bytes). */
#define TAILOR_CT_OFF_MASK 0x1ff

/* For ICMP errors: the connection of the packet the error quotes (its inner IP
 * header and first 8 bytes, sent by the other end, so its direction is reversed). */
static __always_inline int tailor_ct_related(struct tailor_pkt *pkt, const struct tailor_meta *meta, __u8 family,
                                             __u64 now) {
    struct tailor_ct_key key;
    void *end = pkt->data_end;
    __u32 off = meta->l4_off + 8;
    __u8 proto, src[16] = {}, dst[16] = {};
    if (family == 4) {
        struct iphdr *ip = pkt->data + (off & TAILOR_CT_OFF_MASK);
        if ((void *)(ip + 1) > end)
            return 0;
        proto = ip->protocol;
        __builtin_memcpy(src, &ip->saddr, 4);
        __builtin_memcpy(dst, &ip->daddr, 4);
        off += ip->ihl * 4;
    } else {
        struct ipv6hdr *ip6 = pkt->data + (off & TAILOR_CT_OFF_MASK);
        if ((void *)(ip6 + 1) > end)
            return 0;
        proto = ip6->nexthdr;
        __builtin_memcpy(src, &ip6->saddr, 16);
        __builtin_memcpy(dst, &ip6->daddr, 16);
        off += sizeof(*ip6);
    }
    /* The first 8 bytes of the quoted transport header: ports, or ICMP's id. */
    __u16 *words = pkt->data + (off & TAILOR_CT_OFF_MASK);
    if ((void *)(words + 4) > end)
        return 0;
    __u16 sport = 0, dport = 0;
    if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
        sport = words[0];
        dport = words[1];
    } else if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
        sport = dport = words[2];
    }
    tailor_ct_key_make(&key, family, proto, src, sport, dst, dport);
    struct tailor_ct_entry *entry = bpf_map_lookup_elem(&conntrack, &key);
    return entry && entry->expires > now;
}

/* Looks the packet up: its connection's entry (if live) and its ctstate. */
static __always_inline void tailor_ct_lookup(struct tailor_pkt *pkt, const struct tailor_meta *meta,
                                             struct tailor_ct_lookup *ct) {
    __u8 family = meta->eth_proto == ETH_P_IPV6 ? 6 : 4;
    __u8 proto = meta->ip_proto;
    ct->entry = NULL;
    ct->now = bpf_ktime_get_ns();
    ct->state = TAILOR_CT_INVALID;
    ct->trackable = 0;
    /* What may open a connection: a TCP SYN (nf_conntrack_tcp_loose = 0), an ICMP
     * request, anything of UDP and other protocols. */
    int opens = 1;
    /* ICMP: requests go from the originator, replies from the other end. */
    int icmp = 0, request = 0;
    if (!(meta->flags & TAILOR_META_L4)) {
        /* A later fragment, or a protocol without ports: tracked by addresses
         * alone, except fragments of port protocols, which have no ports to
         * find their connection by. */
        if (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6)
            return;
        ct->from_a = tailor_ct_key_make(&ct->key, family, proto, meta->saddr, 0, meta->daddr, 0);
    } else if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
        if ((family == 4) != (proto == IPPROTO_ICMP))
            return;
        __u8 type = meta->sport & 0xff;   /* parse.h stores the ICMP type as a number */
        if (tailor_icmp_is_untracked(family, type)) {
            ct->state = TAILOR_CT_UNTRACKED;
            return;
        }
        if (tailor_icmp_is_error(family, type)) {
            if (tailor_ct_related(pkt, meta, family, ct->now))
                ct->state = TAILOR_CT_RELATED;
            return;
        }
        icmp = 1;
        request = tailor_icmp_is_request(family, type);
        if (!request && !tailor_icmp_is_reply(family, type))
            return;
        __u16 *id = pkt->data + ((meta->l4_off + 4) & TAILOR_CT_OFF_MASK);
        if ((void *)(id + 1) > pkt->data_end)
            return;
        ct->from_a = tailor_ct_key_make(&ct->key, family, proto, meta->saddr, *id, meta->daddr, *id);
        opens = request;
    } else {
        if (proto == IPPROTO_TCP) {
            if (!tailor_tcp_flags_valid(meta->tcp_flags))
                return;
            opens = (meta->tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST)) == TCP_SYN;
        }
        ct->from_a = tailor_ct_key_make(&ct->key, family, proto, meta->saddr, meta->sport, meta->daddr, meta->dport);
    }

    struct tailor_ct_entry *entry = bpf_map_lookup_elem(&conntrack, &ct->key);
    /* A TCP SYN on a closed or closing connection opens it again. */
    int reopens = proto == IPPROTO_TCP && opens && entry &&
                  (entry->tcp_state == TCP_CT_TIME_WAIT || entry->tcp_state == TCP_CT_CLOSE);
    if (entry && entry->expires > ct->now && !reopens) {
        int original = ct->from_a == entry->orig_is_a;
        /* An ICMP request from the replier, or a reply from the originator, is not
         * part of this exchange. */
        if (icmp && original != request)
            return;
        ct->entry = entry;
        ct->trackable = 1;
        ct->state = original && !entry->seen_reply ? TAILOR_CT_NEW : TAILOR_CT_ESTABLISHED;
        return;
    }
    if (!opens)
        return;
    ct->trackable = 1;
    ct->state = TAILOR_CT_NEW;
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

/* Records a packet the cube accepted: creates its connection or moves it on. */
static __always_inline void tailor_ct_update(const struct tailor_meta *meta, struct tailor_ct_lookup *ct) {
    if (!ct->trackable)
        return;
    __u8 proto = meta->ip_proto;
    struct tailor_ct_entry fresh = {}, *e = ct->entry;
    if (!e) {
        fresh.orig_is_a = ct->from_a;
        e = &fresh;
    }
    int original = ct->from_a == e->orig_is_a;
    if (!original)
        e->seen_reply = 1;
    __u64 timeout;
    if (proto == IPPROTO_TCP) {
        e->tcp_state = tailor_tcp_next(e, meta->tcp_flags, original);
        timeout = tailor_ct_tcp_timeout(e->tcp_state);
    } else if (proto == IPPROTO_UDP) {
        timeout = e->seen_reply ? TAILOR_CT_UDP_STREAM_TIMEOUT : TAILOR_CT_UDP_TIMEOUT;
    } else if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
        timeout = TAILOR_CT_ICMP_TIMEOUT;
    } else {
        timeout = TAILOR_CT_GENERIC_TIMEOUT;
    }
    e->expires = ct->now + timeout;
    if (e == &fresh)
        bpf_map_update_elem(&conntrack, &ct->key, &fresh, BPF_ANY);
}
