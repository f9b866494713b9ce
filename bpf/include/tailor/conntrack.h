/* Connection tracking for cubes: a state map of connections keyed by their
 * endpoints, on top of <tailor/conntrack_state.h> (the TCP state machine, Linux
 * conntrack's timeouts, ICMP kinds), without sequence-number window checks.
 * Including this header gives the cube its `conntrack` map (state, carried into
 * a replacement). docs/cubes/firewall.md describes the semantics. */
#pragma once

#include <tailor/cube.h>
#include <tailor/parse.h>
#include <tailor/conntrack_state.h>

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

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 131072);
    __type(key, struct tailor_ct_key);
    __type(value, struct tailor_ct_entry);
} conntrack SEC(".maps") TAILOR_STATE;

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

/* What conntrack knows of the packet being looked at. */
struct tailor_ct_lookup {
    struct tailor_ct_key key;
    struct tailor_ct_entry *entry; /* the live entry, or NULL */
    __u64 now;                     /* tailor_ct_now() when the packet was looked up */
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
    ct->now = tailor_ct_now();
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

/* Records a packet the cube accepted: creates its connection or moves it on. */
static __always_inline void tailor_ct_update(const struct tailor_meta *meta, struct tailor_ct_lookup *ct) {
    if (!ct->trackable)
        return;
    struct tailor_ct_entry fresh = {}, *e = ct->entry;
    if (!e) {
        fresh.orig_is_a = ct->from_a;
        e = &fresh;
    }
    tailor_ct_refresh(e, meta->ip_proto, meta->tcp_flags, ct->from_a == e->orig_is_a, ct->now);
    if (e == &fresh)
        bpf_map_update_elem(&conntrack, &ct->key, &fresh, BPF_ANY);
}
