/* Ordered match rules shared by the filter and classifier cubes: the fields a
 * rule matches on (family, protocol, source and destination prefix, port ranges,
 * TCP flags) and the verdict byte each cube reads its own way (an action, an
 * output). Encoded by Sources/TailorCubes/Filter.swift (Filter.Rule.encoded).
 * Including this header gives the cube its `rules` table and `rule_count`. */
#pragma once

#include <tailor/cube.h>
#include <tailor/parse.h>

/* One rule. Zero means "any" for family, proto and prefix lengths; port ranges
 * are inclusive, host order, and 0-65535 matches any port. */
struct tailor_rule {
    __u8 family;        /* 0 any, 4, 6 */
    __u8 proto;         /* 0 any, else IPPROTO_* */
    __u8 src_len;       /* prefix length in bits */
    __u8 dst_len;
    __u8 src[16];       /* network order; IPv4 in the first 4 bytes */
    __u8 dst[16];
    __u16 sport_lo, sport_hi;
    __u16 dport_lo, dport_hi;
    __u8 tcp_flags_mask;  /* the rule matches when (flags & mask) == value */
    __u8 tcp_flags_value;
    __u8 verdict;       /* filter: 0 pass, 1 drop; classifier: the output */
    __u8 pad;
};

/* Whether the first `len` bits of a and b agree. */
static __always_inline int tailor_prefix_match(const __u8 *a, const __u8 *b, __u32 len) {
    for (int w = 0; w < 4; w++) {
        int bits = (int)len - 32 * w;
        if (bits <= 0)
            return 1;
        __u32 mask = bits >= 32 ? 0xffffffffu : ~(0xffffffffu >> bits);
        __u32 x = bpf_ntohl(*(const __u32 *)(a + 4 * w));
        __u32 y = bpf_ntohl(*(const __u32 *)(b + 4 * w));
        if ((x ^ y) & mask)
            return 0;
    }
    return 1;
}

static __always_inline int tailor_rule_matches(const struct tailor_rule *r, const struct tailor_meta *meta) {
    __u32 flags = meta->flags;
    if (r->family) {
        if (!(flags & TAILOR_META_L3))
            return 0;
        __u8 family = meta->eth_proto == 0x0800 ? 4 : 6;
        if (family != r->family)
            return 0;
    }
    if (r->proto && (!(flags & TAILOR_META_L3) || meta->ip_proto != r->proto))
        return 0;
    if (r->src_len && !tailor_prefix_match(meta->saddr, r->src, r->src_len))
        return 0;
    if (r->dst_len && !tailor_prefix_match(meta->daddr, r->dst, r->dst_len))
        return 0;
    if (r->sport_lo != 0 || r->sport_hi != 0xffff) {
        __u16 p = bpf_ntohs(meta->sport);
        if (!(flags & TAILOR_META_L4) || p < r->sport_lo || p > r->sport_hi)
            return 0;
    }
    if (r->dport_lo != 0 || r->dport_hi != 0xffff) {
        __u16 p = bpf_ntohs(meta->dport);
        if (!(flags & TAILOR_META_L4) || p < r->dport_lo || p > r->dport_hi)
            return 0;
    }
    if (r->tcp_flags_mask && (meta->tcp_flags & r->tcp_flags_mask) != r->tcp_flags_value)
        return 0;
    return 1;
}

#define TAILOR_MAX_RULES 64

/* Rules in order; rule_count of them are used. A rule inserted in the middle
 * changes what every later entry means, so the controller replaces the cube
 * instead of editing the table. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, TAILOR_MAX_RULES);
    __type(key, __u32);
    __type(value, struct tailor_rule);
} rules SEC(".maps") TAILOR_TABLE;

const volatile __u32 rule_count = 0;

/* Sets `result` to the verdict of the first rule the packet matches and leaves it
 * as it is when none does. A macro, not a function: written as an inline function
 * returning the verdict, the TC programs were rejected by the 6.18 verifier
 * ("infinite loop detected"), while the same loop written in place is accepted. */
#define TAILOR_FIRST_MATCH(meta, result)                                            \
    for (__u32 i = 0; i < TAILOR_MAX_RULES && i < rule_count; i++) {              \
        const struct tailor_rule *r = bpf_map_lookup_elem(&rules, &i);            \
        if (r && tailor_rule_matches(r, meta)) {                                   \
            result = r->verdict;                                                   \
            break;                                                                 \
        }                                                                          \
    }
