/* Test fixture: reads the packet without a bounds check, which the verifier rejects. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp") int rejected(struct xdp_md *ctx) {
    unsigned char *data = (void *)(long)ctx->data;
    return data[20] == 1 ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
