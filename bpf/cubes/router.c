/* router: static IPv4 and IPv6 routing on TC hooks. Routes are a longest-prefix
 * match table: the router's own addresses (handed on, to Linux), its connected
 * networks (sent straight to the destination) and static routes via next hops
 * (one chosen per flow when there are several: ECMP). A routed packet has its
 * TTL or hop limit decremented and leaves by its interface, Linux's neighbour
 * table resolving the next hop (bpf_redirect_neigh): ARP and ND stay Linux's job.
 * What the router does not forward goes on unchanged. docs/cubes/router.md. */
#include <tailor/cube.h>
#include <tailor/parse.h>
#include <tailor/lpm.h>
#include <tailor/interfaces.h>

#define ROUTER_MAX_HOPS 8

enum route_kind {
    ROUTE_VIA = 0,        /* to one of hop[] */
    ROUTE_CONNECTED = 1,  /* on the network of interface `port`: straight to the destination */
    ROUTE_LOCAL = 2,      /* one of the router's own addresses, or a connected network's broadcast */
};

struct route_hop {
    __u8 addr[16];        /* IPv4 in the first 4 bytes */
    __u32 port;           /* the interface it is reached by: an index into tailor_ifindex */
};

/* Written by Sources/TailorCubes/Router.swift (Router.Route.encoded). */
struct route {
    __u8 kind;            /* enum route_kind */
    __u8 hops;            /* next hops in hop[] (ROUTE_VIA) */
    __u16 pad;
    __u32 port;           /* the interface (ROUTE_CONNECTED) */
    struct route_hop hop[ROUTER_MAX_HOPS];
};

/* Each entry is a whole route: the controller changes routes one by one in place. */
TAILOR_LPM_PAIR(routes, 16384, struct route, TAILOR_TABLE_ENTRY_SAFE);

/* What became of the packets, per CPU: each one counted once. */
enum router_outcome {
    RT_ROUTED = 0,        /* sent on to its next hop */
    RT_LOCAL = 1,         /* for the router itself, multicast, broadcast or link-local: handed on */
    RT_NO_ROUTE = 2,      /* no route matched: handed on */
    RT_TTL_EXPIRED = 3,   /* TTL or hop limit would reach 0: handed on */
    RT_TOO_BIG = 4,       /* larger than the egress interface's MTU: handed on */
    RT_NO_INTERFACE = 5,  /* the route's interface does not exist: handed on */
    RT_OUTCOMES = 6,
};

TAILOR_COUNTER_ARRAY(outcomes, RT_OUTCOMES);

/* Hands the packet on unrouted (to the next cube, or to Linux at the end of the chain). */
static __always_inline int hand_on(struct tailor_pkt *pkt, __u32 outcome) {
    tailor_count(&outcomes, outcome);
    return tailor_next(pkt);
}

static __always_inline int link_local_v6(const __u8 *addr) {
    return addr[0] == 0xfe && (addr[1] & 0xc0) == 0x80;
}

/* What no router forwards: packets to multicast or broadcast addresses, and IPv6
 * packets to or from a link-local address (fe80::/10: their scope is the link, as
 * Linux's ip6_forward holds too). */
static __always_inline int not_forwardable(const struct tailor_meta *meta, int v6) {
    const __u8 *daddr = meta->daddr;
    if (v6)
        return daddr[0] == 0xff || link_local_v6(daddr) || link_local_v6(meta->saddr);
    return (daddr[0] & 0xf0) == 0xe0 || (daddr[0] == 0xff && daddr[1] == 0xff && daddr[2] == 0xff && daddr[3] == 0xff);
}

/* Decrements the TTL or hop limit; false when it would reach 0 (Linux then
 * answers with ICMP time exceeded, when it forwards). The IPv4 checksum is
 * updated as Linux's ip_decrease_ttl does. */
static __always_inline int decrement_ttl(struct tailor_pkt *pkt, struct tailor_meta *meta, int v6) {
    __u32 off = meta->l3_off;
    if (off > 64)
        return 0;
    void *l3 = pkt->data + off;
    if (v6) {
        struct ipv6hdr *ip6 = l3;
        if ((void *)(ip6 + 1) > pkt->data_end || ip6->hop_limit <= 1)
            return 0;
        ip6->hop_limit -= 1;
        return 1;
    }
    struct iphdr *ip = l3;
    if ((void *)(ip + 1) > pkt->data_end || ip->ttl <= 1)
        return 0;
    __u32 check = ip->check;
    check += bpf_htons(0x0100);
    ip->check = (__u16)(check + (check >= 0xffff));
    ip->ttl -= 1;
    return 1;
}

TAILOR_CUBE(router) {
    /* Only TC can hand a packet to a next hop through Linux's neighbour table;
     * validation keeps the router off XDP chains. */
    if (pkt->hook != TAILOR_HOOK_TC)
        return tailor_next(pkt);
    struct tailor_meta *meta = tailor_meta_get();
    if (!meta)
        return tailor_chain_failure();
    if (!(tailor_parse(pkt, meta) & TAILOR_META_L3))
        return tailor_next(pkt);
    int v6 = meta->eth_proto == ETH_P_IPV6;
    if (not_forwardable(meta, v6))
        return hand_on(pkt, RT_LOCAL);

    struct route *route = tailor_lpm_lookup(&routes_v4, &routes_v6, meta->daddr, v6);
    if (!route)
        return hand_on(pkt, RT_NO_ROUTE);
    if (route->kind == ROUTE_LOCAL)
        return hand_on(pkt, RT_LOCAL);

    __u32 port = route->port;
    const __u8 *nexthop = meta->daddr;
    if (route->kind == ROUTE_VIA) {
        __u32 hops = route->hops;
        if (hops == 0 || hops > ROUTER_MAX_HOPS)
            return hand_on(pkt, RT_NO_ROUTE);
        /* The flow's hash (addresses, ports, protocol): a flow keeps its next hop. */
        __u32 i = hops == 1 ? 0 : bpf_get_hash_recalc(pkt->ctx) % hops;
        /* The verifier cannot bound a remainder: bound it where the compiler,
         * which can, would otherwise drop the check. */
        asm volatile("" : "+r"(i));
        if (i >= ROUTER_MAX_HOPS)
            return hand_on(pkt, RT_NO_ROUTE);
        port = route->hop[i].port;
        nexthop = route->hop[i].addr;
    }
    __u32 ifindex = tailor_interface(port);
    if (!ifindex)
        return hand_on(pkt, RT_NO_INTERFACE);

    /* Larger than the egress MTU (each segment, for a GSO packet): Linux
     * fragments it or answers "fragmentation needed", when it forwards. */
    __u32 mtu_len = 0;
    if (bpf_check_mtu(pkt->ctx, ifindex, &mtu_len, 0, BPF_MTU_CHK_SEGS) != BPF_MTU_CHK_RET_SUCCESS)
        return hand_on(pkt, RT_TOO_BIG);
    if (!decrement_ttl(pkt, meta, v6))
        return hand_on(pkt, RT_TTL_EXPIRED);
    tailor_count(&outcomes, RT_ROUTED);
    return tailor_redirect_neigh(pkt, ifindex, v6, nexthop);
}
