/* The static-inline parts of DPDK's fast path, as real functions Rust can
 * call. Thin wrappers, except: sluice_mbuf_reset_to sets a single-segment
 * packet, and the burst variants below do per-packet field work for a whole
 * burst in one call, so the fast path makes a few calls per burst rather
 * than several per packet. */
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

struct rte_mbuf *sluice_pktmbuf_alloc(struct rte_mempool *mp) {
	return rte_pktmbuf_alloc(mp);
}

void sluice_pktmbuf_free(struct rte_mbuf *m) {
	rte_pktmbuf_free(m);
}

/* The buffer: its start and length (headroom, data room). */
void *sluice_mbuf_buf(struct rte_mbuf *m, uint16_t *len) {
	*len = m->buf_len;
	return m->buf_addr;
}

/* Makes m a single-segment packet of len bytes at offset off of its buffer. */
static inline void reset_to(struct rte_mbuf *m, uint16_t off, uint16_t len) {
	m->data_off = off;
	m->data_len = len;
	m->pkt_len = len;
	m->nb_segs = 1;
	m->next = NULL;
	m->ol_flags = 0;
}

void sluice_mbuf_reset_to(struct rte_mbuf *m, uint16_t off, uint16_t len) {
	reset_to(m, off, len);
}

/* The application's private area after the rte_mbuf header. */
void *sluice_mbuf_priv(struct rte_mbuf *m) {
	return rte_mbuf_to_priv(m);
}

int sluice_errno(void) {
	return rte_errno;
}

unsigned sluice_socket_id(void) {
	return rte_socket_id();
}

/* What sluice-io needs of a received mbuf. Layout shared with Rust
 * (sluice_dpdk_sys::sluice_pkt): keep both in step. */
struct sluice_pkt {
	uint64_t index; /* first 8 bytes of the private area */
	uint16_t off;   /* data_off */
	uint16_t len;   /* data_len */
	uint16_t segs;  /* nb_segs */
	uint16_t pad;
};
_Static_assert(sizeof(struct sluice_pkt) == 16, "sluice_pkt layout");

/* rte_eth_rx_burst, then each packet's index, offset, length and segments. */
uint16_t sluice_rx_burst_pkts(uint16_t port, uint16_t queue, struct rte_mbuf **pkts,
			      struct sluice_pkt *info, uint16_t n) {
	uint16_t got = rte_eth_rx_burst(port, queue, pkts, n);
	for (uint16_t i = 0; i < got; i++) {
		const struct rte_mbuf *m = pkts[i];
		info[i].index = *(const uint64_t *)rte_mbuf_to_priv((struct rte_mbuf *)m);
		info[i].off = m->data_off;
		info[i].len = m->data_len;
		info[i].segs = m->nb_segs;
		info[i].pad = 0;
	}
	return got;
}

/* Sets each packet to len[i] bytes at off[i] of its buffer, then
 * rte_eth_tx_burst: returns how many the queue took (a prefix). The mbufs
 * must be single-segment already (nb_segs 1, next NULL): only the fields in
 * the mbuf's first cache line are written. sluice-io holds no other kind
 * (it drops chained frames on receive; an allocated mbuf is reset). */
uint16_t sluice_tx_burst_pkts(uint16_t port, uint16_t queue, struct rte_mbuf **pkts,
			      const uint16_t *off, const uint16_t *len, uint16_t n) {
	for (uint16_t i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		m->data_off = off[i];
		m->data_len = len[i];
		m->pkt_len = len[i];
		m->ol_flags = 0;
	}
	return rte_eth_tx_burst(port, queue, pkts, n);
}

/* rte_pktmbuf_free_bulk. */
void sluice_pktmbuf_free_bulk(struct rte_mbuf **pkts, unsigned n) {
	rte_pktmbuf_free_bulk(pkts, n);
}
