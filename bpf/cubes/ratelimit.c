/* ratelimit: DDoS mitigation. A token bucket per source address, or per source
 * prefix (rate in packets per second, burst in packets), and a drop list of source
 * prefixes. Packets over their bucket's limit or from a listed prefix are dropped
 * and counted; the others go on. docs/cubes/ratelimit.md. */
#include <tailor/cube.h>
#include <tailor/parse.h>
#include <tailor/lpm.h>

#define NS_PER_SEC 1000000000ull

/* A source, masked to the configured prefix length. */
struct bucket_key {
    __u8 family;        /* 4 or 6 */
    __u8 len;           /* prefix length the address is masked to */
    __u16 pad;
    __u8 addr[16];
};

/* GCRA, the token bucket as one number: the theoretical arrival time (ns) of the
 * source's next packet if it sent at exactly the rate. A packet may pass while
 * that time is at most (burst - 1) intervals ahead of now; passing moves it one
 * interval on. One 64-bit word, changed by compare-and-swap, so CPUs sending for
 * the same source never grant more than burst + rate * t between them. */
struct bucket {
    __u64 tat;
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct bucket_key);
    __type(value, struct bucket);
} buckets SEC(".maps") TAILOR_STATE;

/* Source prefixes whose packets are always dropped (drop_v4, drop_v6). Each entry
 * means the same on its own: the controller changes entries in place. */
TAILOR_LPM_PAIR(drop, 16384, __u8, TAILOR_TABLE_ENTRY_SAFE);

enum drop_reason {
    DROP_OVER_LIMIT = 0,
    DROP_LISTED = 1,
};

/* Drops by reason, per CPU. */
TAILOR_COUNTER_ARRAY(drops, 2);

const volatile __u64 rate_pps = 1;   /* tokens added per second */
const volatile __u64 burst = 1;      /* bucket size in packets */
const volatile __u8 v4_len = 32;     /* source prefix a bucket covers */
const volatile __u8 v6_len = 64;

static __always_inline int drop(__u32 reason) {
    tailor_count(&drops, reason);
    return TAILOR_DROP;
}

/* Keeps the first `len` bits of `addr` (16 bytes). */
static __always_inline void mask(__u8 *addr, __u8 len) {
    for (int i = 0; i < 16; i++) {
        int bits = (int)len - 8 * i;
        if (bits >= 8)
            continue;
        addr[i] &= bits <= 0 ? 0 : (__u8)(0xff << (8 - bits));
    }
}

TAILOR_CUBE(ratelimit) {
    struct tailor_meta *meta = tailor_meta_get();
    if (!meta)
        return tailor_chain_failure();
    if (!(tailor_parse(pkt, meta) & TAILOR_META_L3))
        return tailor_next(pkt);
    int v6 = meta->eth_proto == ETH_P_IPV6;

    if (tailor_lpm_lookup(&drop_v4, &drop_v6, meta->saddr, v6))
        return drop(DROP_LISTED);

    struct bucket_key key = { .family = v6 ? 6 : 4, .len = v6 ? v6_len : v4_len };
    __builtin_memcpy(key.addr, meta->saddr, 16);
    mask(key.addr, key.len);

    __u64 now = bpf_ktime_get_ns();
    __u64 interval = NS_PER_SEC / rate_pps;
    __u64 tolerance = (burst - 1) * interval;
    struct bucket *bucket = bpf_map_lookup_elem(&buckets, &key);
    if (!bucket) {
        /* A new source starts with a full bucket, less this packet. */
        struct bucket fresh = { .tat = now + interval };
        if (bpf_map_update_elem(&buckets, &key, &fresh, BPF_NOEXIST) == 0)
            return tailor_next(pkt);
        bucket = bpf_map_lookup_elem(&buckets, &key);
        if (!bucket)
            return drop(DROP_OVER_LIMIT);
    }
    /* Another CPU may move the time between the read and the swap: try again with
     * what it wrote. Sources that keep several CPUs racing are flooding anyway. */
    for (int attempt = 0; attempt < 8; attempt++) {
        __u64 seen = bucket->tat;
        __u64 tat = seen > now ? seen : now;
        if (tat - now > tolerance)
            return drop(DROP_OVER_LIMIT);
        if (__sync_val_compare_and_swap(&bucket->tat, seen, tat + interval) == seen)
            return tailor_next(pkt);
    }
    return drop(DROP_OVER_LIMIT);
}
