/* nat: source NAT (masquerade to an address, ports from a range) and destination
 * NAT (port forwarding) for IPv4 TCP, UDP and ICMP echo, both directions of every
 * flow, and ICMP errors about a translated flow translated outside and inside, as
 * Linux's nf_nat does.
 *
 * Per packet: the translation table first (both directions of a flow are entered
 * when it is created, like conntrack's original and reply tuples), then the dnat
 * rules (destination address, protocol, port), then the snat rules (source and
 * destination prefix, first match). A packet that matches nothing goes on
 * untouched. Rewrites go through the skb helpers, so TC only: a CHECKSUM_PARTIAL
 * packet (veth, local senders) carries only its pseudo-header sum, which
 * bpf_l4_csum_replace keeps right. docs/cubes/nat.md; the rules come from
 * Sources/TailorCubes/NAT.swift. */
#include <tailor/cube.h>
#include <tailor/parse.h>
#include <tailor/conntrack_state.h>

#define NAT_ICMP_ECHOREPLY 0
#define NAT_ICMP_ECHO 8

#define NAT_MAX_SNAT 64       /* snat rules (rodata) */
#define NAT_MAX_DNAT 1024     /* dnat rules (table) */
#define NAT_PORT_TRIES 32     /* ports tried for a new snat flow */
/* Offsets into the packet are masked to this so the verifier can bound them: an
 * ICMP error's inner transport header starts at most 14 + 8 + 60 + 8 + 60 bytes in. */
#define NAT_OFF_MASK 0x1ff

/* A packet's tuple as the cube sees it, before any rewrite. */
struct nat_key {
    __u8 family;       /* 4 (the control plane refuses IPv6 for now) */
    __u8 proto;
    __u16 pad;
    __u8 src[16];      /* IPv4 in the first 4 bytes, the rest zero */
    __u8 dst[16];
    __u16 sport;       /* network order; ICMP echo: the id */
    __u16 dport;       /* network order; ICMP echo: the message type (8 request, 0 reply) */
} __attribute__((aligned(8)));

enum nat_rewrite {
    NAT_REWRITE_SRC = 0,   /* the packet's source becomes addr:port */
    NAT_REWRITE_DST = 1,   /* its destination does */
};

/* What a packet of one direction of a flow gets. The flow's state (TCP state,
 * expiry) lives in its original direction's entry; a reply entry names it. */
struct nat_entry {
    struct tailor_ct_entry ct;   /* original direction only: the flow's state */
    struct nat_key other;        /* the flow's other direction */
    __u8 addr[16];
    __u16 port;                  /* network order; ICMP echo: the id */
    __u8 rewrite;                /* enum nat_rewrite */
    __u8 reply;                  /* this is the reply direction's entry */
    __u32 pad;
};

/* Flows, both directions. State: carried into a replacement, shared by zone. An
 * entry whose flow expired is treated as absent. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 131072);
    __type(key, struct nat_key);
    __type(value, struct nat_entry);
} translations SEC(".maps") TAILOR_STATE;

/* dnat rules: (protocol, destination port, address) -> new destination. Each entry
 * means the same alone: the controller changes entries in place. */
struct nat_dnat_key {
    __u8 family;
    __u8 proto;
    __u16 port;        /* network order */
    __u8 addr[16];
};

struct nat_dnat_target {
    __u8 addr[16];
    __u16 port;        /* network order */
    __u16 pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, NAT_MAX_DNAT);
    __type(key, struct nat_dnat_key);
    __type(value, struct nat_dnat_target);
} dnat_rules SEC(".maps") TAILOR_TABLE_ENTRY_SAFE;

/* snat rules, in order, specialised into the program (a change replaces the
 * instance, its translations carried over). Addresses and masks in network order. */
struct nat_snat_rule {
    __u32 src;
    __u32 src_mask;
    __u32 dst;
    __u32 dst_mask;
    __u32 to;
    __u16 lo;          /* port range, host order */
    __u16 hi;
};

const volatile struct nat_snat_rule snat_rules[NAT_MAX_SNAT] = {};
const volatile __u32 snat_count = 0;

enum nat_drop {
    NAT_DROP_NO_PORT = 0,   /* every port tried for a new snat flow was taken */
    NAT_DROP_CLASH = 1,     /* a new dnat flow's reply would be another live flow's */
    NAT_DROP_REWRITE = 2,   /* the kernel refused to rewrite the packet */
    NAT_DROPS = 3,
};

/* Drops by reason, per CPU. */
TAILOR_COUNTER_ARRAY(drops, NAT_DROPS);

enum nat_outcome {
    NAT_FLOW = 0,           /* translated as its flow says */
    NAT_NEW_DNAT = 1,       /* opened a flow by a dnat rule */
    NAT_NEW_SNAT = 2,       /* opened a flow by an snat rule */
    NAT_ICMP_ERROR = 3,     /* an ICMP error about a flow, translated outside and inside */
    NAT_UNTOUCHED = 4,      /* matched nothing: passed on as it came */
    NAT_OUTCOMES = 5,
};

/* Packets by outcome, per CPU. */
TAILOR_COUNTER_ARRAY(outcomes, NAT_OUTCOMES);

static __always_inline int nat_drop(__u32 reason) {
    tailor_count(&drops, reason);
    return TAILOR_DROP;
}

static __always_inline int nat_key_equal(const struct nat_key *a, const struct nat_key *b) {
    const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
    return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4];
}

/* The entry of `key` when its flow is alive, and in *flow the entry holding the
 * flow's state; NULL when there is none, the flow expired, or the entry is a
 * leftover of a flow whose original direction now belongs to another. */
static __always_inline struct nat_entry *nat_live(const struct nat_key *key, __u64 now, struct nat_entry **flow) {
    struct nat_entry *e = bpf_map_lookup_elem(&translations, key);
    if (!e)
        return NULL;
    struct nat_entry *owner = e;
    if (e->reply) {
        struct nat_key original = e->other;
        owner = bpf_map_lookup_elem(&translations, &original);
        if (!owner || owner->reply || !nat_key_equal(&owner->other, key))
            return NULL;
    }
    if (owner->ct.expires <= now)
        return NULL;
    *flow = owner;
    return e;
}

/* Enters `entry` at `key` unless a live flow has it: the claim of a reply tuple. */
static __always_inline int nat_claim(const struct nat_key *key, const struct nat_entry *entry, __u64 now) {
    if (bpf_map_update_elem(&translations, key, entry, BPF_NOEXIST) == 0)
        return 1;
    struct nat_entry *flow;
    if (nat_live(key, now, &flow))
        return 0;
    return bpf_map_update_elem(&translations, key, entry, BPF_ANY) == 0;
}

/* The packet as read before any write. */
struct nat_packet {
    struct nat_key key;
    __u32 l3;          /* offset of the IPv4 header */
    __u32 l4;          /* of the transport header */
    __u32 csum;        /* of the transport checksum */
    __u64 csum_flags;  /* UDP: a zero checksum stays zero, a computed zero is sent as 0xffff */
    __u8 icmp;         /* ICMP echo: one id instead of two ports, no pseudo-header */
    __u8 tcp_flags;
};

/* Writes addr:port into the packet's source or destination and fixes the IPv4 and
 * transport checksums (the pseudo-header's addresses too). */
static __always_inline int nat_write(struct __sk_buff *skb, const struct nat_packet *p, __u8 rewrite,
                                     const __u8 *addr, __u16 port) {
    int src = rewrite == NAT_REWRITE_SRC;
    __u32 from = *(const __u32 *)(src ? p->key.src : p->key.dst), to = *(const __u32 *)addr;
    if (from != to) {
        if (bpf_skb_store_bytes(skb, p->l3 + (src ? 12 : 16), &to, 4, 0) ||
            bpf_l3_csum_replace(skb, p->l3 + 10, from, to, 4))
            return -1;
        if (!p->icmp && bpf_l4_csum_replace(skb, p->csum, from, to, BPF_F_PSEUDO_HDR | p->csum_flags | 4))
            return -1;
    }
    /* ICMP echo has one id, at the place of TCP's sequence number. */
    __u16 old = src || p->icmp ? p->key.sport : p->key.dport;
    __u32 at = p->l4 + (p->icmp ? 4 : src ? 0 : 2);
    if (old != port) {
        if (bpf_skb_store_bytes(skb, at, &port, 2, 0) || bpf_l4_csum_replace(skb, p->csum, old, port, p->csum_flags | 2))
            return -1;
    }
    return 0;
}

/* The chain's next cubes see the packet as it now is. */
static __always_inline void nat_note(struct tailor_meta *meta, const struct nat_packet *p, __u8 rewrite,
                                     const __u8 *addr, __u16 port) {
    int src = rewrite == NAT_REWRITE_SRC;
    __builtin_memcpy(src ? meta->saddr : meta->daddr, addr, 4);
    if (p->icmp)
        return;
    if (src)
        meta->sport = port;
    else
        meta->dport = port;
}

/* Translates the packet as `e` says and moves its flow on; drops it when the
 * kernel refuses the rewrite. */
static __always_inline int nat_apply(struct tailor_pkt *pkt, struct tailor_meta *meta, const struct nat_packet *p,
                                     const struct nat_entry *e, __u32 outcome) {
    if (nat_write(pkt->ctx, p, e->rewrite, e->addr, e->port))
        return nat_drop(NAT_DROP_REWRITE);
    nat_note(meta, p, e->rewrite, e->addr, e->port);
    tailor_count(&outcomes, outcome);
    return tailor_next(pkt);
}

/* The reply direction of a flow whose original direction `key` gets `rewrite` to
 * addr:port: its key, and what its packets get (the original end back). */
static __always_inline void nat_reply(const struct nat_key *key, __u8 rewrite, const __u8 *addr, __u16 port,
                                      struct nat_key *reply, struct nat_entry *entry) {
    int src = rewrite == NAT_REWRITE_SRC;
    reply->family = key->family;
    reply->proto = key->proto;
    reply->pad = 0;
    /* Source and destination swap; the rewritten end is addr:port. */
    __builtin_memcpy(reply->src, src ? key->dst : addr, 16);
    __builtin_memcpy(reply->dst, src ? addr : key->src, 16);
    if (key->proto == IPPROTO_ICMP) {
        reply->sport = port;
        reply->dport = bpf_htons(NAT_ICMP_ECHOREPLY);
    } else {
        reply->sport = src ? key->dport : port;
        reply->dport = src ? port : key->sport;
    }
    __builtin_memset(entry, 0, sizeof(*entry));
    entry->other = *key;
    entry->reply = 1;
    entry->rewrite = src ? NAT_REWRITE_DST : NAT_REWRITE_SRC;
    __builtin_memcpy(entry->addr, src ? key->src : key->dst, 16);
    entry->port = src || key->proto == IPPROTO_ICMP ? key->sport : key->dport;
}

/* The original direction's entry of a new flow, its state started by this packet. */
static __always_inline void nat_original(const struct nat_packet *p, __u8 rewrite, const __u8 *addr, __u16 port,
                                         const struct nat_key *reply, struct nat_entry *entry, __u64 now) {
    __builtin_memset(entry, 0, sizeof(*entry));
    entry->ct.orig_is_a = 1;
    tailor_ct_refresh(&entry->ct, p->key.proto, p->tcp_flags, 1, now);
    entry->other = *reply;
    entry->rewrite = rewrite;
    __builtin_memcpy(entry->addr, addr, 16);
    entry->port = port;
}

/* What may open a flow: a TCP SYN (as conntrack with nf_conntrack_tcp_loose=0, the
 * firewall's choice), any UDP, an ICMP echo request. */
static __always_inline int nat_opens(const struct nat_packet *p) {
    if (p->key.proto == IPPROTO_TCP)
        return (p->tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) == TCP_SYN;
    if (p->key.proto == IPPROTO_ICMP)
        return p->key.dport == bpf_htons(NAT_ICMP_ECHO);
    return 1;
}

/* A packet of a live flow: its state moved on, then translated. */
static __always_inline int nat_known(struct tailor_pkt *pkt, struct tailor_meta *meta, const struct nat_packet *p,
                                     struct nat_entry *e, struct nat_entry *flow, __u64 now) {
    int original = !e->reply;
    __u8 proto = p->key.proto;
    if (proto == IPPROTO_TCP) {
        /* A SYN on a closed or closing connection opens it again, on the same ports. */
        if (original && nat_opens(p) && (flow->ct.tcp_state == TCP_CT_TIME_WAIT || flow->ct.tcp_state == TCP_CT_CLOSE)) {
            flow->ct.tcp_state = TCP_CT_NONE;
            flow->ct.fin = 0;
            flow->ct.seen_reply = 0;
        }
        if (tailor_tcp_flags_valid(p->tcp_flags))
            tailor_ct_refresh(&flow->ct, proto, p->tcp_flags, original, now);
    } else {
        tailor_ct_refresh(&flow->ct, proto, 0, original, now);
    }
    return nat_apply(pkt, meta, p, e, NAT_FLOW);
}

/* A flow from a dnat rule: the destination becomes the rule's target. */
static __always_inline int nat_new_dnat(struct tailor_pkt *pkt, struct tailor_meta *meta, const struct nat_packet *p,
                                        const struct nat_dnat_target *target, __u64 now) {
    struct nat_key reply;
    struct nat_entry entry;   /* the reply direction's, then the original's */
    nat_reply(&p->key, NAT_REWRITE_DST, target->addr, target->port, &reply, &entry);
    if (!nat_claim(&reply, &entry, now))
        return nat_drop(NAT_DROP_CLASH);
    nat_original(p, NAT_REWRITE_DST, target->addr, target->port, &reply, &entry, now);
    bpf_map_update_elem(&translations, &p->key, &entry, BPF_ANY);
    return nat_apply(pkt, meta, p, &entry, NAT_NEW_DNAT);
}

/* A 32-bit mix of the flow's tuple: where a new flow's port search starts. */
static __always_inline __u32 nat_hash(const struct nat_key *key) {
    __u32 h = *(const __u32 *)key->src * 0x9e3779b1u;
    h ^= *(const __u32 *)key->dst * 0x85ebca6bu;
    h ^= ((__u32)key->sport << 16 | key->dport) * 0xc2b2ae35u;
    h ^= key->proto;
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    return h;
}

/* A flow from snat rule `rule`: the source becomes the rule's address and a port
 * of its range whose reply tuple no live flow has: the original port when it is in
 * the range and free, else successive ports from a position the flow's hash picks. */
static __always_inline int nat_new_snat(struct tailor_pkt *pkt, struct tailor_meta *meta, const struct nat_packet *p,
                                        __u32 rule, __u64 now) {
    __u8 to[16] = {};
    *(__u32 *)to = snat_rules[rule].to;
    __u32 lo = snat_rules[rule].lo, hi = snat_rules[rule].hi;
    __u32 size = hi - lo + 1;
    __u32 own = bpf_ntohs(p->key.sport);
    __u32 start = nat_hash(&p->key) % size;
    struct nat_key reply;
    struct nat_entry entry;   /* the reply direction's, then the original's */
    __u16 port = 0;
    int claimed = 0;
    for (__u32 i = 0; i < NAT_PORT_TRIES && i <= size; i++) {
        __u32 candidate;
        if (i == 0) {
            if (own < lo || own > hi)
                continue;
            candidate = own;
        } else {
            candidate = lo + (start + i - 1) % size;
        }
        port = bpf_htons((__u16)candidate);
        nat_reply(&p->key, NAT_REWRITE_SRC, to, port, &reply, &entry);
        if (nat_claim(&reply, &entry, now)) {
            claimed = 1;
            break;
        }
    }
    if (!claimed)
        return nat_drop(NAT_DROP_NO_PORT);
    nat_original(p, NAT_REWRITE_SRC, to, port, &reply, &entry, now);
    bpf_map_update_elem(&translations, &p->key, &entry, BPF_ANY);
    return nat_apply(pkt, meta, p, &entry, NAT_NEW_SNAT);
}

/* The first snat rule a packet from `src` to `dst` matches, or -1. */
static __always_inline int nat_snat_rule(__u32 src, __u32 dst) {
    for (__u32 i = 0; i < NAT_MAX_SNAT && i < snat_count; i++) {
        if ((src & snat_rules[i].src_mask) == snat_rules[i].src && (dst & snat_rules[i].dst_mask) == snat_rules[i].dst)
            return (int)i;
    }
    return -1;
}

/* A TCP or UDP flow no rule translates whose replies an snat rule would take for
 * new flows (one routed to a masqueraded host's own address): entered as a flow
 * translated to itself, as Linux's conntrack keeps a null binding, so that its
 * replies go back as they are. The packet goes on untouched; so does it when a
 * live flow owns the reply tuple already. */
static __always_inline int nat_new_untranslated(struct tailor_pkt *pkt, const struct nat_packet *p, __u64 now) {
    struct nat_key reply;
    struct nat_entry entry;   /* the reply direction's, then the original's */
    nat_reply(&p->key, NAT_REWRITE_DST, p->key.dst, p->key.dport, &reply, &entry);
    if (nat_claim(&reply, &entry, now)) {
        nat_original(p, NAT_REWRITE_DST, p->key.dst, p->key.dport, &reply, &entry, now);
        bpf_map_update_elem(&translations, &p->key, &entry, BPF_ANY);
    }
    tailor_count(&outcomes, NAT_UNTOUCHED);
    return tailor_next(pkt);
}

/* Writes a field of an ICMP error's quoted packet and keeps the ICMP checksum,
 * which covers it, right. */
static __always_inline int nat_quoted_field(struct __sk_buff *skb, __u32 icmp_csum, __u32 at, __u32 from, __u32 to,
                                            __u32 size) {
    if (bpf_skb_store_bytes(skb, at, &to, size, 0) || bpf_l4_csum_replace(skb, icmp_csum, from, to, size))
        return -1;
    return 0;
}

/* Moves a checksum of the quoted packet (at `check_at`) on by a field it covers
 * going from `from` to `to`, and the ICMP checksum by the checksum's own change.
 * A UDP datagram sent without a checksum keeps none, and a computed zero is sent
 * as 0xffff. */
static __always_inline int nat_quoted_check(struct __sk_buff *skb, __u32 icmp_csum, __u32 check_at, __u32 from,
                                            __u32 to, __u32 size, int udp) {
    __u16 before, after;
    if (bpf_skb_load_bytes(skb, check_at, &before, 2))
        return -1;
    if (udp && before == 0)
        return 0;
    if (bpf_l3_csum_replace(skb, check_at, from, to, size) || bpf_skb_load_bytes(skb, check_at, &after, 2))
        return -1;
    if (udp && after == 0) {
        after = 0xffff;
        if (bpf_skb_store_bytes(skb, check_at, &after, 2, 0))
            return -1;
    }
    return bpf_l4_csum_replace(skb, icmp_csum, before, after, 2) ? -1 : 0;
}

/* An ICMP error (unreachable, time exceeded...) quoting a packet of a translated
 * flow, as Linux's nf_nat_icmp_reply_translation does it: the outer address the
 * flow's direction rewrites, and in the quoted packet (which went the other way)
 * the address and port at the other end put back, its IPv4 and transport
 * checksums and the ICMP checksum moved with them. Returns -1 when the error is
 * about no live flow (or cannot be read), to pass it on untouched. */
static __always_inline int nat_icmp_error(struct tailor_pkt *pkt, struct tailor_meta *meta, const struct nat_packet *p,
                                          __u64 now) {
    void *data = pkt->data, *end = pkt->data_end;
    __u32 inner = (p->l4 + 8) & NAT_OFF_MASK;
    struct iphdr *ip = data + inner;
    if ((void *)(ip + 1) > end || ip->ihl < 5 || ip->version != 4)
        return -1;
    __u32 quoted = (inner + ip->ihl * 4) & NAT_OFF_MASK;
    __u16 *words = data + quoted;
    if ((void *)(words + 4) > end)
        return -1;
    /* The quoted packet's tuple reversed is the key of the error's direction. */
    struct nat_key key = { .family = 4, .proto = ip->protocol };
    __builtin_memcpy(key.src, &ip->daddr, 4);
    __builtin_memcpy(key.dst, &ip->saddr, 4);
    __u32 check_at = 0;
    int udp = 0, pseudo = 1;
    if (key.proto == IPPROTO_TCP || key.proto == IPPROTO_UDP) {
        key.sport = words[1];
        key.dport = words[0];
        udp = key.proto == IPPROTO_UDP;
        /* TCP's checksum only when the error quotes that much of the header, as Linux. */
        if (udp)
            check_at = quoted + 6;
        else if (data + quoted + 18 <= end)
            check_at = quoted + 16;
    } else if (key.proto == IPPROTO_ICMP) {
        __u8 type = *(__u8 *)words;
        if (type != NAT_ICMP_ECHO && type != NAT_ICMP_ECHOREPLY)
            return -1;
        key.sport = words[2];
        key.dport = bpf_htons(type == NAT_ICMP_ECHO ? NAT_ICMP_ECHOREPLY : NAT_ICMP_ECHO);
        check_at = quoted + 2;
        pseudo = 0;
    } else {
        return -1;
    }
    struct nat_entry *flow, *e = nat_live(&key, now, &flow);
    if (!e)
        return -1;
    int src = e->rewrite == NAT_REWRITE_SRC;
    __u32 to = *(__u32 *)e->addr;
    __u16 port = e->port;
    __u32 outer = *(__u32 *)(src ? p->key.src : p->key.dst);
    /* In the quoted packet the end to put back is the other one. */
    __u32 quoted_addr = *(__u32 *)(src ? key.src : key.dst);
    __u32 addr_at = inner + (src ? 16 : 12);
    __u16 quoted_port = src || key.proto == IPPROTO_ICMP ? key.sport : key.dport;   /* an echo has one id */
    __u32 port_at = quoted + (key.proto == IPPROTO_ICMP ? 4 : src ? 2 : 0);

    struct __sk_buff *skb = pkt->ctx;
    __u32 icmp_csum = p->l4 + 2;
    /* Outer header: ICMPv4 has no pseudo-header, only the IPv4 checksum moves. */
    if (outer != to && (bpf_skb_store_bytes(skb, p->l3 + (src ? 12 : 16), &to, 4, 0) ||
                        bpf_l3_csum_replace(skb, p->l3 + 10, outer, to, 4)))
        return nat_drop(NAT_DROP_REWRITE);
    if (quoted_addr != to &&
        (nat_quoted_field(skb, icmp_csum, addr_at, quoted_addr, to, 4) ||
         nat_quoted_check(skb, icmp_csum, inner + 10, quoted_addr, to, 4, 0) ||
         (pseudo && check_at && nat_quoted_check(skb, icmp_csum, check_at, quoted_addr, to, 4, udp))))
        return nat_drop(NAT_DROP_REWRITE);
    if (quoted_port != port &&
        (nat_quoted_field(skb, icmp_csum, port_at, quoted_port, port, 2) ||
         (check_at && nat_quoted_check(skb, icmp_csum, check_at, quoted_port, port, 2, udp))))
        return nat_drop(NAT_DROP_REWRITE);
    __builtin_memcpy(src ? meta->saddr : meta->daddr, &to, 4);
    tailor_count(&outcomes, NAT_ICMP_ERROR);
    return tailor_next(pkt);
}

TAILOR_CUBE(nat) {
    struct tailor_meta *meta = tailor_meta_get();
    if (!meta)
        return tailor_chain_failure();
    /* The rewrites need the skb helpers: validation refuses the type on XDP hooks. */
    if (pkt->hook != TAILOR_HOOK_TC)
        return tailor_chain_failure();
    __u32 parsed = tailor_parse(pkt, meta);
    if (!(parsed & TAILOR_META_L4) || meta->eth_proto != ETH_P_IP)
        goto untouched;

    struct nat_packet p = {
        .key = { .family = 4, .proto = meta->ip_proto },
        .l3 = meta->l3_off,
        .l4 = meta->l4_off,
        .tcp_flags = meta->tcp_flags,
    };
    __builtin_memcpy(p.key.src, meta->saddr, 4);
    __builtin_memcpy(p.key.dst, meta->daddr, 4);
    __u64 now = tailor_ct_now();
    if (p.key.proto == IPPROTO_TCP) {
        p.csum = p.l4 + 16;
    } else if (p.key.proto == IPPROTO_UDP) {
        p.csum = p.l4 + 6;
        p.csum_flags = BPF_F_MARK_MANGLED_0;
    } else if (p.key.proto == IPPROTO_ICMP) {
        __u16 *icmp = pkt->data + (p.l4 & NAT_OFF_MASK);
        if ((void *)(icmp + 4) > pkt->data_end)
            goto untouched;
        __u8 type = meta->sport & 0xff;   /* parse.h keeps the ICMP type in sport */
        p.csum = p.l4 + 2;
        p.icmp = 1;
        if (tailor_icmp_is_error(4, type)) {
            int verdict = nat_icmp_error(pkt, meta, &p, now);
            if (verdict >= 0)
                return verdict;
            goto untouched;
        }
        if (type != NAT_ICMP_ECHO && type != NAT_ICMP_ECHOREPLY)
            goto untouched;
        p.key.sport = icmp[2];
        p.key.dport = bpf_htons(type);
    } else {
        goto untouched;
    }
    if (!p.icmp) {
        p.key.sport = meta->sport;
        p.key.dport = meta->dport;
    }

    struct nat_entry *flow, *e = nat_live(&p.key, now, &flow);
    if (e)
        return nat_known(pkt, meta, &p, e, flow, now);
    if (!nat_opens(&p))
        goto untouched;
    if (!p.icmp) {
        struct nat_dnat_key rule = { .family = 4, .proto = p.key.proto, .port = p.key.dport };
        __builtin_memcpy(rule.addr, p.key.dst, 16);
        struct nat_dnat_target *target = bpf_map_lookup_elem(&dnat_rules, &rule);
        if (target) {
            struct nat_dnat_target copy = *target;
            return nat_new_dnat(pkt, meta, &p, &copy, now);
        }
    }
    __u32 src = *(__u32 *)p.key.src, dst = *(__u32 *)p.key.dst;
    int rule = nat_snat_rule(src, dst);
    if (rule >= 0 && rule < NAT_MAX_SNAT)
        return nat_new_snat(pkt, meta, &p, (__u32)rule, now);
    if (!p.icmp && nat_snat_rule(dst, src) >= 0)
        return nat_new_untranslated(pkt, &p, now);

untouched:
    tailor_count(&outcomes, NAT_UNTOUCHED);
    return tailor_next(pkt);
}
