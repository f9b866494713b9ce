/* filter: passes or drops packets by a small ordered rule table, first match
 * wins (UniBPF's BPFFilter). A passed packet goes on to the next cube. For large
 * rule sets use the firewall cube, which classifies in near-constant time. */
#include <tailor/cube.h>
#include <tailor/parse.h>

#define FILTER_MAX_RULES 64

enum filter_action {
    FILTER_PASS = 0,
    FILTER_DROP = 1,
};

/* One rule. Zero means "any" for family, proto and prefix lengths; port ranges
 * are inclusive, host order, and 0-65535 matches any port. */
struct filter_rule {
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
    __u8 action;
    __u8 pad;
};

/* Rules in order; rule_count of them are used. Changing the order changes what
 * the table means, so the controller replaces the cube instead of editing it. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, FILTER_MAX_RULES);
    __type(key, __u32);
    __type(value, struct filter_rule);
} rules SEC(".maps") TAILOR_TABLE;

const volatile __u32 rule_count = 0;
const volatile __u8 default_action = FILTER_PASS;

/* Whether the first `len` bits of a and b agree. */
static __always_inline int prefix_match(const __u8 *a, const __u8 *b, __u32 len) {
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

static __always_inline int rule_matches(const struct filter_rule *r, const struct tailor_meta *meta) {
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
    if (r->src_len && !prefix_match(meta->saddr, r->src, r->src_len))
        return 0;
    if (r->dst_len && !prefix_match(meta->daddr, r->dst, r->dst_len))
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

TAILOR_CUBE(filter) {
    struct tailor_meta *meta = tailor_meta_get();
    if (!meta)
        return TAILOR_DROP;
    tailor_parse(pkt, meta);
    __u8 action = default_action;
    for (__u32 i = 0; i < FILTER_MAX_RULES && i < rule_count; i++) {
        const struct filter_rule *r = bpf_map_lookup_elem(&rules, &i);
        if (r && rule_matches(r, meta)) {
            action = r->action;
            break;
        }
    }
    return action == FILTER_DROP ? TAILOR_DROP : tailor_next(pkt);
}
