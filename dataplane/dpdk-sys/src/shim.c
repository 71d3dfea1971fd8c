/* The static-inline parts of DPDK's fast path, as real functions Rust can
 * call. Each is a thin wrapper: no logic beyond what DPDK's inline does,
 * except sluice_mbuf_reset_to, which sets a single-segment packet. */
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

uint16_t sluice_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n) {
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t sluice_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n) {
	return rte_eth_tx_burst(port, queue, pkts, n);
}

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

/* The packet: data offset from the buffer start, first segment's length,
 * number of segments. */
void sluice_mbuf_pkt(const struct rte_mbuf *m, uint16_t *off, uint16_t *len, uint16_t *segs) {
	*off = m->data_off;
	*len = m->data_len;
	*segs = m->nb_segs;
}

/* Makes m a single-segment packet of len bytes at offset off of its buffer. */
void sluice_mbuf_reset_to(struct rte_mbuf *m, uint16_t off, uint16_t len) {
	m->data_off = off;
	m->data_len = len;
	m->pkt_len = len;
	m->nb_segs = 1;
	m->next = NULL;
	m->ol_flags = 0;
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
