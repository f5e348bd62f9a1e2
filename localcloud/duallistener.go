package localcloud

import (
	"bufio"
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// dualListener serves plain HTTP and TLS on one port: a connection that opens with a TLS
// handshake record (first byte 0x16) is served over TLS, any other as plain text. Plain
// http:// and ws:// are what browsers accept on localhost without a certificate; https://
// and wss:// (with localcloud's CA) are what clients that insist on TLS need, e.g. AWS's
// KVS WebRTC SDK for JavaScript, whose presigner only takes wss:// endpoints.
type dualListener struct {
	net.Listener
	tls *tls.Config

	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
	errMu     sync.Mutex
	err       error
}

func newDualListener(ln net.Listener, cfg *tls.Config) *dualListener {
	d := &dualListener{Listener: ln, tls: cfg, conns: make(chan net.Conn), done: make(chan struct{})}
	go d.acceptLoop()
	return d
}

func (d *dualListener) acceptLoop() {
	for {
		c, err := d.Listener.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			d.errMu.Lock()
			d.err = err
			d.errMu.Unlock()
			d.Close()
			return
		}
		go d.classify(c)
	}
}

// classify peeks at the first byte (for at most 10 s) and hands the connection on.
func (d *dualListener) classify(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	first, err := br.Peek(1)
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close()
		return
	}
	var out net.Conn = &peekedConn{Conn: c, r: br}
	if first[0] == 0x16 && d.tls != nil {
		out = tls.Server(out, d.tls)
	}
	select {
	case d.conns <- out:
	case <-d.done:
		c.Close()
	}
}

func (d *dualListener) Accept() (net.Conn, error) {
	select {
	case c := <-d.conns:
		return c, nil
	case <-d.done:
		d.errMu.Lock()
		defer d.errMu.Unlock()
		if d.err != nil {
			return nil, d.err
		}
		return nil, net.ErrClosed
	}
}

func (d *dualListener) Close() error {
	var err error
	d.closeOnce.Do(func() {
		close(d.done)
		err = d.Listener.Close()
	})
	return err
}

// peekedConn reads through the buffer that holds the peeked byte.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (p *peekedConn) Read(b []byte) (int, error) { return p.r.Read(b) }
