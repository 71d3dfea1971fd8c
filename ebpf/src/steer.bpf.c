// SPDX-License-Identifier: Apache-2.0
/*
 * Sluice XDP steering program.
 *
 * Decides, per received frame, whether the kernel or the data plane (an AF_XDP
 * socket on the receiving queue) gets it:
 *
 *   kernel (XDP_PASS):  ARP, IPv6 ND, IP fragments, IKE (UDP 500; UDP 4500 with
 *                       the zero non-ESP marker, RFC 3948 §2.2), NAT-T
 *                       keepalives (RFC 3948 §2.3), anything else addressed to
 *                       the appliance, multicast/broadcast/link-local, non-IP,
 *                       malformed frames and, on outside interfaces, transit.
 *   data plane (XSKMAP): ESP (RFC 4303) and ESP-in-UDP (RFC 3948 §2.1)
 *                       addressed to the appliance; on inside interfaces,
 *                       transit traffic (to protect).
 *
 * Built as plain SEC("xdp"), not "xdp.frags": native XDP on veth then refuses
 * MTU > 3506 (see ebpf/README.md). Only helpers that are not GPL-only are used.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "steer.h"

#define ETH_P_8021AD_ 0x88A8
#define IPV4_MF_OFFSET_MASK 0x3fff
#define UDP_PORT_IKE 500
#define UDP_PORT_NATT 4500
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_ESP 50
#define NEXTHDR_ICMPV6 58
#define NEXTHDR_DEST 60
#define ICMPV6_ND_FIRST 133 /* router solicitation */
#define ICMPV6_ND_LAST 137  /* redirect */

struct vlan_hdr_ {
	__be16 tci;
	__be16 proto;
};

/* AF_XDP sockets, keyed by rx queue index. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, STEER_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

/* The appliance's own IPv4 addresses: key is the address as on the wire. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STEER_MAX_LOCAL_ADDRS);
	__type(key, __u32);
	__type(value, __u8);
} local_v4 SEC(".maps");

/* The appliance's own IPv6 addresses. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STEER_MAX_LOCAL_ADDRS);
	__type(key, __u8[16]);
	__type(value, __u8);
} local_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct steer_config);
} steer_cfg SEC(".maps");

/* Packets per class, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STEER_NR_CLASSES);
	__type(key, __u32);
	__type(value, __u64);
} steer_stats SEC(".maps");

static __always_inline void count(__u32 class)
{
	__u64 *n = bpf_map_lookup_elem(&steer_stats, &class);

	if (n)
		*n += 1;
}

static __always_inline int pass(__u32 class)
{
	count(class);
	return XDP_PASS;
}

/*
 * Hand the frame to the AF_XDP socket bound to the receiving queue. With no
 * socket there the kernel gets it (counted as NO_SOCKET_PASS on top of the
 * class); bpf_redirect_map's XDP_PASS fallback covers a socket that goes away
 * between the lookup and the redirect.
 */
static __always_inline int redirect(struct xdp_md *ctx, __u32 class)
{
	__u32 queue = ctx->rx_queue_index;

	count(class);
	if (!bpf_map_lookup_elem(&xsks, &queue))
		return pass(STEER_NO_SOCKET_PASS);
	return bpf_redirect_map(&xsks, queue, XDP_PASS);
}

static __always_inline int transit(struct xdp_md *ctx)
{
	__u32 key = 0;
	struct steer_config *cfg = bpf_map_lookup_elem(&steer_cfg, &key);

	if (cfg && cfg->role == STEER_ROLE_INSIDE)
		return redirect(ctx, STEER_REDIRECT_TRANSIT);
	return pass(STEER_PASS_TRANSIT_OUTSIDE);
}

/* UDP addressed to the appliance. `udp` points at the UDP header. */
static __always_inline int steer_udp(struct xdp_md *ctx, void *udp_start, void *data_end)
{
	struct udphdr *udp = udp_start;
	__u8 *payload = (__u8 *)(udp + 1);
	__u32 ulen, plen;

	if ((void *)(udp + 1) > data_end)
		return pass(STEER_PASS_MALFORMED);
	ulen = bpf_ntohs(udp->len);
	if (ulen < sizeof(*udp))
		return pass(STEER_PASS_MALFORMED);
	plen = ulen - sizeof(*udp);

	if (udp->dest == bpf_htons(UDP_PORT_IKE))
		return pass(STEER_PASS_IKE);
	if (udp->dest != bpf_htons(UDP_PORT_NATT))
		return pass(STEER_PASS_LOCAL_OTHER);

	/*
	 * UDP 4500 (RFC 3948): the length comes from the UDP header, not from
	 * data_end, because short frames carry Ethernet padding.
	 */
	if (plen == 1) {
		if ((void *)(payload + 1) > data_end)
			return pass(STEER_PASS_MALFORMED);
		if (payload[0] == 0xff)
			return pass(STEER_PASS_NATT_KEEPALIVE);
		return pass(STEER_PASS_MALFORMED);
	}
	if (plen < 4 || (void *)(payload + 4) > data_end)
		return pass(STEER_PASS_MALFORMED);
	if ((payload[0] | payload[1] | payload[2] | payload[3]) == 0)
		return pass(STEER_PASS_IKE);
	/* ESP header: SPI (non-zero, checked above) and sequence number. */
	if (plen < 8 || (void *)(payload + 8) > data_end)
		return pass(STEER_PASS_MALFORMED);
	return redirect(ctx, STEER_REDIRECT_ESP_UDP);
}

static __always_inline int steer_ipv4(struct xdp_md *ctx, void *l3, void *data_end, int l2_group)
{
	struct iphdr *iph = l3;
	__u32 hlen, daddr;
	void *l4;

	if ((void *)(iph + 1) > data_end)
		return pass(STEER_PASS_MALFORMED);
	if (iph->version != 4 || iph->ihl < 5)
		return pass(STEER_PASS_MALFORMED);
	hlen = (__u32)iph->ihl * 4;
	if (bpf_ntohs(iph->tot_len) < hlen)
		return pass(STEER_PASS_MALFORMED);
	l4 = l3 + hlen;
	if (l4 > data_end)
		return pass(STEER_PASS_MALFORMED);

	/* Non-first fragments carry no UDP header; the kernel reassembles. */
	if (iph->frag_off & bpf_htons(IPV4_MF_OFFSET_MASK))
		return pass(STEER_PASS_FRAGMENT);

	daddr = iph->daddr;
	if (!bpf_map_lookup_elem(&local_v4, &daddr)) {
		__u32 host = bpf_ntohl(daddr);

		/* 224.0.0.0/4, limited broadcast, 169.254.0.0/16, 0.0.0.0/8,
		 * 127.0.0.0/8 and any Ethernet group address are never transit. */
		if (l2_group || (host & 0xf0000000) == 0xe0000000 || host == 0xffffffff ||
		    (host & 0xffff0000) == 0xa9fe0000 || (host & 0xff000000) == 0 ||
		    (host & 0xff000000) == 0x7f000000)
			return pass(STEER_PASS_LINK_SCOPE);
		return transit(ctx);
	}

	if (iph->protocol == IPPROTO_ESP)
		return redirect(ctx, STEER_REDIRECT_ESP);
	if (iph->protocol == IPPROTO_UDP)
		return steer_udp(ctx, l4, data_end);
	return pass(STEER_PASS_LOCAL_OTHER);
}

static __always_inline int steer_ipv6(struct xdp_md *ctx, void *l3, void *data_end, int l2_group)
{
	struct ipv6hdr *ip6h = l3;
	__u8 daddr[16];
	__u8 nexthdr;
	__u32 off;
	__u8 *hdr;

	if ((void *)(ip6h + 1) > data_end)
		return pass(STEER_PASS_MALFORMED);
	if (ip6h->version != 6)
		return pass(STEER_PASS_MALFORMED);

	nexthdr = ip6h->nexthdr;
	off = sizeof(*ip6h);

	/* Bounded walk over the extension headers that may precede the
	 * fragment header or the upper layer (RFC 8200 §4.1). */
#pragma unroll
	for (int i = 0; i < STEER_MAX_EXT_HDRS; i++) {
		if (nexthdr != NEXTHDR_HOP && nexthdr != NEXTHDR_ROUTING && nexthdr != NEXTHDR_DEST)
			break;
		hdr = l3 + off;
		if ((void *)(hdr + 2) > data_end)
			return pass(STEER_PASS_MALFORMED);
		nexthdr = hdr[0];
		off += ((__u32)hdr[1] + 1) * 8;
		/* Keeps the offset provably bounded for the verifier. */
		off &= 0x3fff;
	}
	if (nexthdr == NEXTHDR_FRAGMENT)
		return pass(STEER_PASS_FRAGMENT);
	/* Deeper chains than we walk: let the kernel parse them. */
	if (nexthdr == NEXTHDR_HOP || nexthdr == NEXTHDR_ROUTING || nexthdr == NEXTHDR_DEST)
		return pass(STEER_PASS_MALFORMED);

	hdr = l3 + off;
	if ((void *)hdr > data_end)
		return pass(STEER_PASS_MALFORMED);

	/* Neighbour discovery (RFC 4861 §4) goes to the kernel whatever the
	 * destination (solicited-node multicast, other hosts' addresses). */
	if (nexthdr == NEXTHDR_ICMPV6) {
		if ((void *)(hdr + 1) > data_end)
			return pass(STEER_PASS_MALFORMED);
		if (hdr[0] >= ICMPV6_ND_FIRST && hdr[0] <= ICMPV6_ND_LAST)
			return pass(STEER_PASS_ND);
	}

	__builtin_memcpy(daddr, &ip6h->daddr, sizeof(daddr));
	if (!bpf_map_lookup_elem(&local_v6, daddr)) {
		/* ff00::/8 multicast and fe80::/10 link-local are never transit. */
		if (l2_group || daddr[0] == 0xff || (daddr[0] == 0xfe && (daddr[1] & 0xc0) == 0x80))
			return pass(STEER_PASS_LINK_SCOPE);
		return transit(ctx);
	}

	if (nexthdr == NEXTHDR_ESP)
		return redirect(ctx, STEER_REDIRECT_ESP);
	if (nexthdr == IPPROTO_UDP)
		return steer_udp(ctx, hdr, data_end);
	return pass(STEER_PASS_LOCAL_OTHER);
}

SEC("xdp")
int sluice_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *l3 = eth + 1;
	int l2_group;
	__be16 proto;

	if ((void *)(eth + 1) > data_end)
		return pass(STEER_PASS_MALFORMED);
	proto = eth->h_proto;
	l2_group = eth->h_dest[0] & 1;

	/* One 802.1Q / 802.1ad tag; a second tag counts as non-IP. */
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD_)) {
		struct vlan_hdr_ *vh = l3;

		if ((void *)(vh + 1) > data_end)
			return pass(STEER_PASS_MALFORMED);
		proto = vh->proto;
		l3 = vh + 1;
	}

	if (proto == bpf_htons(ETH_P_ARP))
		return pass(STEER_PASS_ARP);
	if (proto == bpf_htons(ETH_P_IP))
		return steer_ipv4(ctx, l3, data_end, l2_group);
	if (proto == bpf_htons(ETH_P_IPV6))
		return steer_ipv6(ctx, l3, data_end, l2_group);
	return pass(STEER_PASS_NON_IP);
}

char _license[] SEC("license") = "Apache-2.0";
