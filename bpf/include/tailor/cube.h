/* The tailor cube ABI: what a cube author includes.
 *
 * One C source serves XDP and TC: TAILOR_CUBE(fn) emits an XDP program and a TC
 * program around the same inline body, and the loader keeps the one the chain's
 * hook needs. The body sees a `struct tailor_pkt` and returns a tailor verdict,
 * which each hook's wrapper maps to its own return codes. See docs/cube-abi.md.
 */
#pragma once

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

/* Verdicts a cube body returns. */
enum tailor_verdict {
    TAILOR_PASS = 0,
    TAILOR_DROP = 1,
};

/* Which hook a program instance was built for; a compile-time constant in each
 * wrapper, so the verifier sees only that hook's context accesses. */
enum tailor_hook {
    TAILOR_HOOK_XDP = 0,
    TAILOR_HOOK_TC = 1,
};

/* The packet as a cube body sees it, whatever the hook. */
struct tailor_pkt {
    void *ctx;
    void *data;
    void *data_end;
    __u32 len;           /* bytes on the wire: skb->len on TC, data_end - data on XDP */
    enum tailor_hook hook;
};

/* Map ownership, recorded in BTF so the controller can read it from any object:
 * a table is filled by the controller from the spec (and repaired on drift);
 * state belongs to the datapath and is carried over when the cube is replaced. */
#define TAILOR_TABLE __attribute__((btf_decl_tag("tailor:table")))
#define TAILOR_STATE __attribute__((btf_decl_tag("tailor:state")))

static __always_inline int tailor_xdp_verdict(int verdict) {
    return verdict == TAILOR_DROP ? XDP_DROP : XDP_PASS;
}

static __always_inline int tailor_tc_verdict(int verdict) {
    return verdict == TAILOR_DROP ? TC_ACT_SHOT : TC_ACT_OK;
}

/* Declares a cube whose body is `static int fn(struct tailor_pkt *pkt)`. */
#define TAILOR_CUBE(fn)                                                          \
    static __always_inline int fn(struct tailor_pkt *pkt);                       \
    SEC("xdp") int fn##_xdp(struct xdp_md *ctx) {                                \
        struct tailor_pkt pkt = {                                                \
            .ctx = ctx,                                                          \
            .data = (void *)(long)ctx->data,                                     \
            .data_end = (void *)(long)ctx->data_end,                             \
            .len = (__u32)(ctx->data_end - ctx->data),                           \
            .hook = TAILOR_HOOK_XDP,                                             \
        };                                                                       \
        return tailor_xdp_verdict(fn(&pkt));                                     \
    }                                                                            \
    SEC("tc") int fn##_tc(struct __sk_buff *ctx) {                               \
        struct tailor_pkt pkt = {                                                \
            .ctx = ctx,                                                          \
            .data = (void *)(long)ctx->data,                                     \
            .data_end = (void *)(long)ctx->data_end,                             \
            .len = ctx->len,                                                     \
            .hook = TAILOR_HOOK_TC,                                              \
        };                                                                       \
        return tailor_tc_verdict(fn(&pkt));                                      \
    }                                                                            \
    static __always_inline int fn(struct tailor_pkt *pkt)

char _license[] SEC("license") = "GPL";
