/* firewall: a stateful firewall with iptables semantics. Ordered rules (source and
 * destination prefix, protocol, ports, TCP flags, conntrack state), first match
 * wins, accept or drop, a default policy; connection tracking with an optional
 * "accept established and related" fast path before the rules.
 *
 * Classification is Linear Bit Vector Search (bpf-iptables): for each field a
 * lookup gives the bit vector of the rules that field lets match; the AND of the
 * vectors has the matching rules as its set bits, and the lowest is the first
 * match. Each vector carries a summary (bit w set when word w is not zero), so
 * only words set in every summary are read: the cost stays near-flat as rules
 * grow. Fields no rule uses are compiled out by rodata flags (Kecleon's minimum
 * pipeline), and a field whose lookup finds nothing ends the search at once.
 *
 * Every table is versioned (<tailor/versioned.h>): a rule edit writes the changed
 * entries into the generation no packet reads and switches generations with one
 * write, so a packet is classified entirely by the old or the new rules.
 * docs/cubes/firewall.md; the tables are built by Sources/TailorCubes/Firewall.swift. */
#include <tailor/cube.h>
#include <tailor/parse.h>
#include <tailor/conntrack.h>
#include <tailor/lpm.h>
#include <tailor/versioned.h>

#define FW_MAX_WORDS 160                   /* 10,240 rules */
#define FW_MAX_RULES (FW_MAX_WORDS * 64)
#define FW_SUMMARY_WORDS 3                 /* ceil(FW_MAX_WORDS / 64) */
#define FW_NO_PORT 65536                   /* port index of packets without ports */

/* The rules a field value lets match: bit r of bits[] is rule r; bit w of
 * summary[] says whether bits[w] has any bit set. */
struct fw_vector {
    __u64 summary[FW_SUMMARY_WORDS];
    __u64 bits[FW_MAX_WORDS];
};

/* Address fields (src_v4, src_v6, dst_v4, dst_v6): the longest prefix holds the
 * rules of every prefix that contains it, and /0 those without an address (of the
 * same IP version). */
TAILOR_LPM_PAIR_VERSIONED(src, FW_MAX_RULES + 1, struct fw_vector);
TAILOR_LPM_PAIR_VERSIONED(dst, FW_MAX_RULES + 1, struct fw_vector);

/* A versioned array of `entries` per generation. */
#define FW_ARRAY(name, entries, value_type)             \
    struct {                                            \
        __uint(type, BPF_MAP_TYPE_ARRAY);               \
        __uint(max_entries, 2 * (entries));             \
        __type(key, __u32);                             \
        __type(value, value_type);                      \
    } name SEC(".maps") TAILOR_TABLE_VERSIONED

/* Port fields: port -> id of the vector of its interval (ranges cut the port
 * space into intervals), FW_NO_PORT for packets without ports. A vector's id is
 * a hash of its bits, so equal vectors are stored once, an edit adds only the
 * vectors it makes and both generations share the store. */
FW_ARRAY(sport_index, FW_NO_PORT + 1, __u64);
FW_ARRAY(dport_index, FW_NO_PORT + 1, __u64);

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(max_entries, 8 * FW_MAX_RULES + 8);
    __type(key, __u64);
    __type(value, struct fw_vector);
} port_vectors SEC(".maps") TAILOR_TABLE_CONTENT_KEYED;

/* Small fields: a vector per value. */
FW_ARRAY(proto_vectors, 256, struct fw_vector);  /* by IP protocol */
FW_ARRAY(flag_vectors, 256, struct fw_vector);   /* by TCP flags byte */
FW_ARRAY(state_vectors, 5, struct fw_vector);    /* by enum tailor_ct_state */
FW_ARRAY(all_rules, 1, struct fw_vector);        /* every rule: the vector of a field no rule uses */

/* Each rule's action: 0 accept, 1 drop. */
FW_ARRAY(actions, FW_MAX_RULES, __u8);
/* What packets no rule matches get: 0 accept, 1 drop. */
FW_ARRAY(policy, 1, __u8);

enum fw_outcome {
    FW_RULE_ACCEPT = 0,
    FW_RULE_DROP = 1,
    FW_ESTABLISHED = 2,     /* accepted by the established/related fast path */
    FW_POLICY_ACCEPT = 3,
    FW_POLICY_DROP = 4,
    FW_NOT_IP = 5,          /* not IPv4 or IPv6: passed on untouched */
    FW_OUTCOMES = 6,
};

/* Packets by outcome, per CPU. */
TAILOR_COUNTER_ARRAY(outcomes, FW_OUTCOMES);

/* Specialisation, set by the controller. */
const volatile __u32 summary_words = 1;     /* ceil(rule words / 64) */
const volatile __u8 accept_established = 1;
const volatile __u8 use_conntrack = 1;
const volatile __u8 use_src = 0;            /* any rule has a source or an IP version */
const volatile __u8 use_dst = 0;
const volatile __u8 use_sport = 0;
const volatile __u8 use_dport = 0;
const volatile __u8 use_proto = 0;
const volatile __u8 use_flags = 0;
const volatile __u8 use_state = 0;

/* de Bruijn sequence: the index of a 64-bit word's only set bit, without a loop. */
static const __u8 fw_debruijn[64] = {
    0, 1, 48, 2, 57, 49, 28, 3, 61, 58, 50, 42, 38, 29, 17, 4,
    62, 55, 59, 36, 53, 51, 43, 22, 45, 39, 33, 30, 24, 18, 12, 5,
    63, 47, 56, 27, 60, 41, 37, 16, 54, 35, 52, 21, 44, 32, 23, 11,
    46, 26, 40, 15, 34, 20, 31, 10, 25, 14, 19, 9, 13, 8, 7, 6,
};

static __always_inline __u32 fw_lowest_bit(__u64 x) {
    return fw_debruijn[((x & -x) * 0x03f79d71b4cb0a89ull) >> 58];
}


/* The first rule set in the AND of the vectors, or -1. */
static __always_inline int fw_first_rule(const struct fw_vector *src, const struct fw_vector *dst,
                                         const struct fw_vector *sport, const struct fw_vector *dport,
                                         const struct fw_vector *proto, const struct fw_vector *flags,
                                         const struct fw_vector *state) {
    for (__u32 s = 0; s < FW_SUMMARY_WORDS && s < summary_words; s++) {
        __u64 candidates = src->summary[s] & dst->summary[s] & sport->summary[s] & dport->summary[s] &
                           proto->summary[s] & flags->summary[s] & state->summary[s];
        for (int k = 0; k < 64 && candidates; k++) {
            __u32 w = s * 64 + fw_lowest_bit(candidates);
            if (w >= FW_MAX_WORDS)
                return -1;
            __u64 match = src->bits[w] & dst->bits[w] & sport->bits[w] & dport->bits[w] &
                          proto->bits[w] & flags->bits[w] & state->bits[w];
            if (match)
                return (int)(w * 64 + fw_lowest_bit(match));
            candidates &= candidates - 1;
        }
    }
    return -1;
}

/* Entry `key` of generation `gen` of a versioned array of `n` per generation. */
static __always_inline void *fw_at(void *array, __u32 gen, __u32 key, __u32 n) {
    __u32 index = TAILOR_VERSIONED_INDEX(gen, key, n);
    return bpf_map_lookup_elem(array, &index);
}

static __always_inline const struct fw_vector *fw_port(void *index, __u32 gen, __u32 port) {
    __u64 *id = fw_at(index, gen, port, FW_NO_PORT + 1);
    return id ? bpf_map_lookup_elem(&port_vectors, id) : NULL;
}

TAILOR_CUBE(firewall) {
    struct tailor_meta *meta = tailor_meta_get();
    if (!meta)
        return tailor_chain_failure();
    __u32 parsed = tailor_parse(pkt, meta);
    if (!(parsed & TAILOR_META_L3)) {
        tailor_count(&outcomes, FW_NOT_IP);
        return tailor_next(pkt);
    }
    int v6 = meta->eth_proto == ETH_P_IPV6;

    struct tailor_ct_lookup ct = {};
    if (use_conntrack) {
        tailor_ct_lookup(pkt, meta, &ct);
        meta->ct_state = ct.state;
        if (accept_established && (ct.state == TAILOR_CT_ESTABLISHED || ct.state == TAILOR_CT_RELATED)) {
            tailor_ct_update(meta, &ct);
            tailor_count(&outcomes, FW_ESTABLISHED);
            return tailor_next(pkt);
        }
    }

    __u32 gen = tailor_generation_get();
    const struct fw_vector *all = fw_at(&all_rules, gen, 0, 1);
    if (!all)
        return TAILOR_DROP;
    const struct fw_vector *src = all, *dst = all, *sport = all, *dport = all, *proto = all,
                           *flags = all, *state = all;
    int rule = -1;
    /* A field that lets no rule match ends the search: the policy decides. */
    if (use_src && !(src = tailor_lpm_lookup_versioned(&src_v4, &src_v6, meta->saddr, v6, gen)))
        goto policy;
    if (use_dst && !(dst = tailor_lpm_lookup_versioned(&dst_v4, &dst_v6, meta->daddr, v6, gen)))
        goto policy;
    if (use_proto && !(proto = fw_at(&proto_vectors, gen, meta->ip_proto, 256)))
        goto policy;
    /* Ports and flags count only for TCP and UDP with their header present. */
    int ports = (parsed & TAILOR_META_L4) && (meta->ip_proto == IPPROTO_TCP || meta->ip_proto == IPPROTO_UDP);
    if (use_sport && !(sport = fw_port(&sport_index, gen, ports ? bpf_ntohs(meta->sport) : FW_NO_PORT)))
        goto policy;
    if (use_dport && !(dport = fw_port(&dport_index, gen, ports ? bpf_ntohs(meta->dport) : FW_NO_PORT)))
        goto policy;
    if (use_flags && !(flags = fw_at(&flag_vectors, gen, ports && meta->ip_proto == IPPROTO_TCP ? meta->tcp_flags : 0, 256)))
        goto policy;
    if (use_state && !(state = fw_at(&state_vectors, gen, ct.state, 5)))
        goto policy;
    rule = fw_first_rule(src, dst, sport, dport, proto, flags, state);

policy:
    if (rule >= 0) {
        __u8 *action = fw_at(&actions, gen, (__u32)rule, FW_MAX_RULES);
        if (action && *action) {
            tailor_count(&outcomes, FW_RULE_DROP);
            return TAILOR_DROP;
        }
        tailor_count(&outcomes, FW_RULE_ACCEPT);
    } else {
        __u8 *drop = fw_at(&policy, gen, 0, 1);
        if (drop && *drop) {
            tailor_count(&outcomes, FW_POLICY_DROP);
            return TAILOR_DROP;
        }
        tailor_count(&outcomes, FW_POLICY_ACCEPT);
    }
    if (use_conntrack)
        tailor_ct_update(meta, &ct);
    return tailor_next(pkt);
}
