/* The tailor cube ABI: what a cube author includes. docs/cube-abi.md explains it
 * with a complete example.
 *
 * A chain is a root program on one hook (XDP, TC ingress, TC egress) and a
 * prog_array of slots. The root tail-calls slot 0, which holds the entry cube.
 * Each cube instance knows the slots of its next cubes as `const volatile`
 * rodata set before load, so every hop is a tail call with a constant key,
 * which the JIT turns into a direct jump. A cube with N outputs calls them from
 * N constant call sites, so a chain can branch.
 *
 * One C source serves XDP and TC: TAILOR_CUBE(fn) emits an XDP program and a TC
 * program around the same inline body; the loader keeps the one the chain's hook
 * needs. The body sees a `struct tailor_pkt` and returns a tailor verdict, or
 * hands the packet on with tailor_next(pkt) / tailor_next_port(pkt, k).
 */
#pragma once

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

/* ---- verdicts and hooks ------------------------------------------------ */

/* Verdicts a cube body returns; each hook's wrapper maps them to its codes.
 * TAILOR_REDIRECT ends the chain with the redirect a bpf_redirect* helper set up
 * (tailor_redirect): the packet leaves by another interface instead of going on
 * up the stack. Return it only from what such a helper said. */
enum tailor_verdict {
    TAILOR_PASS = 0,
    TAILOR_DROP = 1,
    TAILOR_REDIRECT = 2,
};

/* Which hook a program was built for: a compile-time constant in each wrapper,
 * so the verifier sees only that hook's context accesses. */
enum tailor_hook {
    TAILOR_HOOK_XDP = 0,
    TAILOR_HOOK_TC = 1,
};

/* ---- map ownership ------------------------------------------------------ */

/* Recorded in BTF so the controller can read it from any object:
 * a table is filled by the controller from the spec and repaired on drift; a
 * table marked entry-safe may be changed one entry at a time while packets use
 * it (each entry is meaningful alone); a versioned table holds two generations
 * and packets read the one `tailor_generation` names (<tailor/versioned.h>), so
 * tables that only make sense together change together; a content-keyed table
 * names each value by a key derived from it (a hash), so both generations share
 * it; any other table change replaces the cube.
 * State belongs to the datapath and is carried over when the cube is replaced. */
#define TAILOR_TABLE __attribute__((btf_decl_tag("tailor:table")))
#define TAILOR_TABLE_ENTRY_SAFE __attribute__((btf_decl_tag("tailor:table:entry-safe")))
#define TAILOR_TABLE_VERSIONED __attribute__((btf_decl_tag("tailor:table:versioned")))
#define TAILOR_TABLE_CONTENT_KEYED __attribute__((btf_decl_tag("tailor:table:content-keyed")))
#define TAILOR_STATE __attribute__((btf_decl_tag("tailor:state")))

/* How a state map migrates when its layout changes (docs/state-migration.md):
 * ADDITIVE marks integer fields as counters, so increments the old instance made
 * while entries were being copied are added, not lost; DEFAULT gives a field
 * added to the value a starting value other than zero. Both go after the map. */
#define TAILOR_STATE_ADDITIVE __attribute__((btf_decl_tag("tailor:state:additive")))
#define TAILOR_STATE_DEFAULT(field, value) __attribute__((btf_decl_tag("tailor:default:" #field "=" #value)))

/* ---- chain wiring (rodata, set by the controller before load) ----------- */

#define TAILOR_MAX_PORTS 8          /* outputs a cube may have */
#define TAILOR_PROG_SLOTS 256       /* slots in a chain's prog_array */
#define TAILOR_SLOT_END 0xffffffffu /* "no next cube": the path ends here */

/* The slot each output continues to. */
const volatile __u32 tailor_next_slot[TAILOR_MAX_PORTS] = {
    [0 ... TAILOR_MAX_PORTS - 1] = TAILOR_SLOT_END,
};
/* The chain's verdict at the end of a path. */
const volatile __u8 tailor_default_verdict = TAILOR_PASS;
/* What a packet gets when the next slot is empty: pass (fail open) or drop. */
const volatile __u8 tailor_fail_open = 0;

/* The chain's slots, shared by its root and every cube instance. */
struct {
    __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
    __uint(max_entries, TAILOR_PROG_SLOTS);
    __type(key, __u32);
    __type(value, __u32);
} tailor_progs SEC(".maps");

/* ---- per-packet metadata shared by the chain's cubes --------------------- */

#define TAILOR_PATH_MAX 16

enum tailor_meta_flags {
    TAILOR_META_PARSED = 1 << 0,  /* tailor_parse ran on this packet */
    TAILOR_META_L3 = 1 << 1,      /* an IPv4 or IPv6 header was found */
    TAILOR_META_L4 = 1 << 2,      /* ports (or ICMP type/code) are valid */
};

/* Filled by the root (reset) and tailor_parse (headers), read and extended by
 * cubes. Per CPU: a packet runs to completion on one CPU, through all its cubes. */
struct tailor_meta {
    __u32 flags;
    __u16 eth_proto;   /* host order: ETH_P_IP, ETH_P_IPV6 */
    __u16 l3_off;      /* offsets from the start of the frame */
    __u16 l4_off;
    __u8 ip_proto;     /* IPPROTO_* */
    __u8 tcp_flags;
    __u8 saddr[16];    /* IPv4 addresses use the first 4 bytes */
    __u8 daddr[16];
    __u16 sport;       /* network order; ICMP: type */
    __u16 dport;       /* network order; ICMP: code */
    __u8 ct_state;     /* set by a conntrack cube */
    __u8 hops;         /* entries used in path[] */
    __u16 reserved;
    __u32 mark;        /* a classifier's result, or any cube's note to the next */
    __u16 path[TAILOR_PATH_MAX]; /* ids appended by tag cubes */
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct tailor_meta);
} tailor_meta SEC(".maps");

/* ---- per-cube counters ---------------------------------------------------- */

/* The kernel's run counters do not count programs reached by tail call, so each
 * cube counts itself. State: carried over when the cube is replaced.
 * Packets handed on to a next cube are not counted on the hot path: they are
 * packets - passed - dropped + missed (a miss also ends as passed or dropped). */
struct tailor_counters {
    __u64 packets;    /* packets that entered the cube */
    __u64 bytes;
    __u64 passed;     /* ended here with pass (a verdict, the end of the path, or fail-open)
                         or with a redirect (the packet left by another interface) */
    __u64 dropped;    /* ended here with drop (a verdict, the end of the path, or fail-closed) */
    __u64 missed;     /* next slot found empty */
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct tailor_counters);
} tailor_counters SEC(".maps") TAILOR_STATE;

/* A cube's own counters: a per-CPU array of `entries` u64, one per outcome or
 * reason (an enum of the cube's), state. The daemon exports them as metrics
 * (Sources/TailorDaemon/CubeMetrics.swift). */
#define TAILOR_COUNTER_ARRAY(name, entries)       \
    struct {                                      \
        __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);  \
        __uint(max_entries, entries);             \
        __type(key, __u32);                       \
        __type(value, __u64);                     \
    } name SEC(".maps") TAILOR_STATE

/* Adds one to counter `index` of a TAILOR_COUNTER_ARRAY, for this CPU. */
static __always_inline void tailor_count(void *counters, __u32 index) {
    __u64 *n = bpf_map_lookup_elem(counters, &index);
    if (n)
        *n += 1;
}

/* ---- the packet as a cube sees it ------------------------------------------ */

struct tailor_pkt {
    void *ctx;
    void *data;
    void *data_end;
    __u32 len;                        /* skb->len on TC, data_end - data on XDP */
    enum tailor_hook hook;
    struct tailor_counters *counters; /* this cube's, for this CPU */
};

/* This packet's metadata. NULL only in theory (a one-entry per-CPU array), but the
 * verifier wants the check: a cube that gets NULL returns tailor_chain_failure(). */
static __always_inline struct tailor_meta *tailor_meta_get(void) {
    __u32 zero = 0;
    return bpf_map_lookup_elem(&tailor_meta, &zero);
}

/* The verdict for a packet the chain itself fails (an empty next slot, no metadata):
 * the chain's onMissingCube, fail-closed dropping and fail-open passing. One rule for
 * every cube, so no cube lets through what another would drop. */
static __always_inline int tailor_chain_failure(void) {
    return tailor_fail_open ? TAILOR_PASS : TAILOR_DROP;
}

static __always_inline int tailor_fail_verdict(struct tailor_pkt *pkt) {
    if (pkt->counters)
        pkt->counters->missed += 1;
    return tailor_chain_failure();
}

/* One constant call site for output `i`. */
#define TAILOR__PORT_CASE(i)                                              \
    case i:                                                               \
        if (tailor_next_slot[i] == TAILOR_SLOT_END)                       \
            return tailor_default_verdict;                                \
        bpf_tail_call(pkt->ctx, &tailor_progs, tailor_next_slot[i]);      \
        return tailor_fail_verdict(pkt);

/* Continues on output `port`: tail-calls the next cube and does not return,
 * or returns the chain's default verdict at the end of the path, or the
 * fail-open/closed verdict (counted as missed) when the slot is empty. */
static __always_inline int tailor_next_port(struct tailor_pkt *pkt, __u32 port) {
    switch (port) {
        TAILOR__PORT_CASE(0)
        TAILOR__PORT_CASE(1)
        TAILOR__PORT_CASE(2)
        TAILOR__PORT_CASE(3)
        TAILOR__PORT_CASE(4)
        TAILOR__PORT_CASE(5)
        TAILOR__PORT_CASE(6)
        TAILOR__PORT_CASE(7)
    }
    return tailor_fail_verdict(pkt);
}

/* Continues on the cube's only output. */
static __always_inline int tailor_next(struct tailor_pkt *pkt) {
    return tailor_next_port(pkt, 0);
}

/* Sends the packet out of interface `ifindex` (in the chain's namespace) and ends
 * the chain: returns TAILOR_REDIRECT, or the chain's failure verdict when the
 * kernel refuses (an ifindex it does not know is refused only later, when the
 * packet is sent: it is dropped then). On XDP the target must take XDP frames (a
 * veth whose peer runs an XDP program, or a driver with ndo_xdp_xmit). */
static __always_inline int tailor_redirect(struct tailor_pkt *pkt, __u32 ifindex) {
    long action = bpf_redirect(ifindex, 0);
    if (pkt->hook == TAILOR_HOOK_XDP ? action == XDP_REDIRECT : action == TC_ACT_REDIRECT)
        return TAILOR_REDIRECT;
    return tailor_chain_failure();
}

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* TC only: sends the packet to next hop `nexthop` (16 bytes; IPv4 uses the first
 * 4) out of interface `ifindex`, and ends the chain. Linux's neighbour table
 * fills in the MAC addresses; a next hop it does not know yet is resolved by ARP
 * or ND while the packet waits in the neighbour's queue, as for a packet Linux
 * forwards itself. Returns TAILOR_REDIRECT, or the chain's failure verdict when
 * the kernel refuses, and always on XDP, which has no such helper. */
static __always_inline int tailor_redirect_neigh(struct tailor_pkt *pkt, __u32 ifindex, int v6, const __u8 *nexthop) {
    if (pkt->hook != TAILOR_HOOK_TC)
        return tailor_chain_failure();
    struct bpf_redir_neigh nh = {};
    if (v6) {
        nh.nh_family = AF_INET6;
        __builtin_memcpy(nh.ipv6_nh, nexthop, 16);
    } else {
        nh.nh_family = AF_INET;
        __builtin_memcpy(&nh.ipv4_nh, nexthop, 4);
    }
    return bpf_redirect_neigh(ifindex, &nh, sizeof(nh), 0) == TC_ACT_REDIRECT ? TAILOR_REDIRECT
                                                                              : tailor_chain_failure();
}

/* ---- the two wrappers ---------------------------------------------------- */

static __always_inline struct tailor_counters *tailor__enter(__u32 len) {
    __u32 zero = 0;
    struct tailor_counters *c = bpf_map_lookup_elem(&tailor_counters, &zero);
    if (c) {
        c->packets += 1;
        c->bytes += len;
    }
    return c;
}

static __always_inline int tailor__leave(struct tailor_counters *c, int verdict) {
    if (c) {
        if (verdict == TAILOR_DROP)
            c->dropped += 1;
        else
            c->passed += 1;
    }
    return verdict;
}

/* Declares a cube whose body is `static int fn(struct tailor_pkt *pkt)`. */
#define TAILOR_CUBE(fn)                                                          \
    static __always_inline int fn(struct tailor_pkt *pkt);                       \
    SEC("xdp") int fn##_xdp(struct xdp_md *ctx) {                                \
        __u32 len = (__u32)(ctx->data_end - ctx->data);                          \
        struct tailor_pkt pkt = {                                                \
            .ctx = ctx,                                                          \
            .data = (void *)(long)ctx->data,                                     \
            .data_end = (void *)(long)ctx->data_end,                             \
            .len = len,                                                          \
            .hook = TAILOR_HOOK_XDP,                                             \
            .counters = tailor__enter(len),                                      \
        };                                                                       \
        int verdict = tailor__leave(pkt.counters, fn(&pkt));                     \
        return verdict == TAILOR_DROP ? XDP_DROP                                 \
             : verdict == TAILOR_REDIRECT ? XDP_REDIRECT : XDP_PASS;             \
    }                                                                            \
    SEC("tc") int fn##_tc(struct __sk_buff *ctx) {                               \
        struct tailor_pkt pkt = {                                                \
            .ctx = ctx,                                                          \
            .data = (void *)(long)ctx->data,                                     \
            .data_end = (void *)(long)ctx->data_end,                             \
            .len = ctx->len,                                                     \
            .hook = TAILOR_HOOK_TC,                                              \
            .counters = tailor__enter(ctx->len),                                 \
        };                                                                       \
        int verdict = tailor__leave(pkt.counters, fn(&pkt));                     \
        return verdict == TAILOR_DROP ? TC_ACT_SHOT                              \
             : verdict == TAILOR_REDIRECT ? TC_ACT_REDIRECT : TC_ACT_OK;         \
    }                                                                            \
    static __always_inline int fn(struct tailor_pkt *pkt)

char _license[] SEC("license") = "GPL";
