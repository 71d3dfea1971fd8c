/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared between steer.bpf.c and the Rust loader (ebpf/build.rs parses the
 * `enum steer_class` block below and lib.rs const-asserts that its `Class`
 * enum lists the same names in the same order). Append new classes just before
 * STEER_NR_CLASSES; never reorder (the indexes are the counter map's keys).
 */
#ifndef SLUICE_STEER_H
#define SLUICE_STEER_H

/* One per-CPU counter per packet class: index into the `steer_stats` map. */
enum steer_class {
	STEER_PASS_IKE = 0,		/* UDP 500, or UDP 4500 with the zero non-ESP marker */
	STEER_PASS_NATT_KEEPALIVE = 1,	/* UDP 4500, exactly one payload byte 0xff */
	STEER_PASS_ARP = 2,		/* EtherType 0x0806 */
	STEER_PASS_ND = 3,		/* ICMPv6 133..137 (RS, RA, NS, NA, redirect) */
	STEER_PASS_FRAGMENT = 4,	/* IPv4 MF or offset != 0, IPv6 fragment header */
	STEER_PASS_LOCAL_OTHER = 5,	/* addressed to the appliance, not ESP / IKE */
	STEER_PASS_LINK_SCOPE = 6,	/* multicast, broadcast or link-local, not ours */
	STEER_PASS_NON_IP = 7,		/* neither IPv4, IPv6 nor ARP (LLDP, QinQ, ...) */
	STEER_PASS_MALFORMED = 8,	/* truncated or inconsistent headers */
	STEER_PASS_TRANSIT_OUTSIDE = 9,	/* not ours, arriving on an outside interface */
	STEER_REDIRECT_ESP = 10,	/* IP protocol 50 to the appliance */
	STEER_REDIRECT_ESP_UDP = 11,	/* UDP 4500, non-zero SPI, >= 8 payload bytes */
	STEER_REDIRECT_TRANSIT = 12,	/* not ours, arriving on an inside interface */
	STEER_NO_SOCKET_PASS = 13,	/* a REDIRECT_* packet passed: no XSK on its queue */
	STEER_NR_CLASSES
};

/* Interface roles, value of `struct steer_config.role`. */
#define STEER_ROLE_OUTSIDE 0
#define STEER_ROLE_INSIDE 1

/* The single entry of the `steer_cfg` array map, written by the loader. */
struct steer_config {
	__u32 role;
	__u32 reserved;
};

#define STEER_MAX_QUEUES 64
#define STEER_MAX_LOCAL_ADDRS 256
/* IPv6 extension headers (hop-by-hop, routing, destination options) walked. */
#define STEER_MAX_EXT_HDRS 4

#endif
