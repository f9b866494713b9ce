/* Header parsing shared by cubes: a packet is parsed once per chain, by the
 * first cube that asks, and the result kept in the chain's metadata. */
#pragma once

#include <tailor/cube.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>

struct tailor_vlan_hdr {
    __be16 tci;
    __be16 proto;
};

/* Fills meta's header fields from the packet unless an earlier cube did.
 * Returns meta->flags; a packet without IP has no TAILOR_META_L3. */
static __always_inline __u32 tailor_parse(struct tailor_pkt *pkt, struct tailor_meta *meta) {
    if (meta->flags & TAILOR_META_PARSED)
        return meta->flags;
    meta->flags = TAILOR_META_PARSED;

    void *data = pkt->data, *end = pkt->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end)
        return meta->flags;
    __u16 proto = bpf_ntohs(eth->h_proto);
    __u32 off = sizeof(*eth);
    if (proto == ETH_P_8021Q || proto == ETH_P_8021AD) {
        struct tailor_vlan_hdr *vlan = data + off;
        if ((void *)(vlan + 1) > end)
            return meta->flags;
        proto = bpf_ntohs(vlan->proto);
        off += sizeof(*vlan);
    }
    meta->eth_proto = proto;
    meta->l3_off = off;

    __u8 ip_proto;
    __u32 l4_off;
    if (proto == ETH_P_IP) {
        struct iphdr *ip = data + off;
        if ((void *)(ip + 1) > end || ip->ihl < 5)
            return meta->flags;
        ip_proto = ip->protocol;
        __builtin_memset(meta->saddr, 0, 32);
        __builtin_memcpy(meta->saddr, &ip->saddr, 4);
        __builtin_memcpy(meta->daddr, &ip->daddr, 4);
        l4_off = off + ip->ihl * 4;
        /* Later fragments carry no transport header. */
        if (ip->frag_off & bpf_htons(0x1fff)) {
            meta->ip_proto = ip_proto;
            meta->flags |= TAILOR_META_L3;
            return meta->flags;
        }
    } else if (proto == ETH_P_IPV6) {
        struct ipv6hdr *ip6 = data + off;
        if ((void *)(ip6 + 1) > end)
            return meta->flags;
        ip_proto = ip6->nexthdr;
        __builtin_memcpy(meta->saddr, &ip6->saddr, 16);
        __builtin_memcpy(meta->daddr, &ip6->daddr, 16);
        l4_off = off + sizeof(*ip6);
    } else {
        return meta->flags;
    }
    meta->ip_proto = ip_proto;
    meta->flags |= TAILOR_META_L3;
    meta->l4_off = l4_off & 0xffff;

    void *l4 = data + (l4_off & 0xffff);
    if (ip_proto == IPPROTO_TCP) {
        struct tcphdr *tcp = l4;
        if ((void *)(tcp + 1) > end)
            return meta->flags;
        meta->sport = tcp->source;
        meta->dport = tcp->dest;
        meta->tcp_flags = ((__u8 *)tcp)[13];
    } else if (ip_proto == IPPROTO_UDP) {
        struct udphdr *udp = l4;
        if ((void *)(udp + 1) > end)
            return meta->flags;
        meta->sport = udp->source;
        meta->dport = udp->dest;
    } else if (ip_proto == IPPROTO_ICMP || ip_proto == IPPROTO_ICMPV6) {
        __u8 *icmp = l4;
        if ((void *)(icmp + 2) > end)
            return meta->flags;
        meta->sport = icmp[0];
        meta->dport = icmp[1];
    } else {
        return meta->flags;
    }
    meta->flags |= TAILOR_META_L4;
    return meta->flags;
}
