// Package netshape gives tests a shaped network link: veth pairs from the host through a
// router namespace to a viewer namespace it creates, with tc shaping (a tbf rate limit and
// a netem delay) on the router, so that what the host sends to the viewer crosses a slow
// link with a bounded queue, as a viewer on Wi-Fi or a mobile link. Sockets are opened inside the
// namespace through Net, a pion transport.Net, so that a pion peer in the same process is
// "behind" the link. It needs root and `ip` / `tc` (iproute2); New says so when they are not
// there, and tests skip with that reason.
package netshape

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/pion/transport/v4"
	"github.com/pion/transport/v4/stdnet"
	"golang.org/x/sys/unix"
)

// ErrUnavailable wraps every reason the link cannot be made (not root, no iproute2, no
// network namespaces): tests skip on it.
var ErrUnavailable = errors.New("netshape: a shaped link cannot be made here")

// Options describe the link from the host to the namespace.
type Options struct {
	// Rate is the tbf rate in bit/s (e.g. 8_000_000).
	Rate int
	// Queue is how long the tbf queue may be, in time at Rate (tbf's latency; default 100 ms).
	Queue time.Duration
	// Delay is netem's one-way delay, applied both ways.
	Delay time.Duration
}

// Link is the path host → router namespace → viewer namespace. The shaping sits on the
// router's egress towards the viewer, as on a real bottleneck (a home router, an access
// point): shaping on the sending host's own interface would push back on the sender's
// socket (its send buffer fills and the writes wait) instead of dropping, which no remote
// link does.
type Link struct {
	ns, router string // the viewer's namespace, the router's
	hostDev    string
	routerDev  string // the router's interface towards the viewer, where the shaping is
	HostIP     net.IP // the host's end
	PeerIP     net.IP // the viewer namespace's address
	// NoDelay says why the delay could not be applied (a kernel without netem), or is empty.
	NoDelay  string
	nsHandle *os.File
}

// New creates the namespaces, the veth pairs, the routes and the shaping. Close removes them.
func New(ctx context.Context, opts Options) (*Link, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: not root (network namespaces and tc need it)", ErrUnavailable)
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%w: %s not found (install iproute2)", ErrUnavailable, tool)
		}
	}
	if opts.Rate <= 0 {
		return nil, errors.New("netshape: no rate: set Options.Rate in bit/s")
	}
	if opts.Queue <= 0 {
		opts.Queue = 100 * time.Millisecond
	}
	id := rand.N(1 << 14)
	hi, lo := byte(id>>6), byte(id&0x3f)<<2
	l := &Link{
		ns:        fmt.Sprintf("edgecam-shape-%d", id),
		router:    fmt.Sprintf("edgecam-shaper-%d", id),
		hostDev:   fmt.Sprintf("ecsh%d", id),
		routerDev: fmt.Sprintf("ecsr%d", id),
		HostIP:    net.IPv4(10, 201, hi, lo+1),
		PeerIP:    net.IPv4(10, 202, hi, lo+2),
	}
	routerIn, routerOut := net.IPv4(10, 201, hi, lo+2), net.IPv4(10, 202, hi, lo+1)
	viewerDev := l.routerDev + "v"
	if err := run(ctx, "ip", "netns", "add", l.router); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if err := run(ctx, "ip", "netns", "add", l.ns); err != nil {
		_ = run(ctx, "ip", "netns", "del", l.router)
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	steps := [][]string{
		{"ip", "link", "add", l.hostDev, "type", "veth", "peer", "name", l.hostDev + "r"},
		{"ip", "link", "set", l.hostDev + "r", "netns", l.router},
		{"ip", "addr", "add", l.HostIP.String() + "/30", "dev", l.hostDev},
		{"ip", "link", "set", l.hostDev, "up"},
		{"ip", "-n", l.router, "addr", "add", routerIn.String() + "/30", "dev", l.hostDev + "r"},
		{"ip", "-n", l.router, "link", "set", l.hostDev + "r", "up"},
		{"ip", "-n", l.router, "link", "add", l.routerDev, "type", "veth", "peer", "name", viewerDev},
		{"ip", "-n", l.router, "link", "set", viewerDev, "netns", l.ns},
		{"ip", "-n", l.router, "addr", "add", routerOut.String() + "/30", "dev", l.routerDev},
		{"ip", "-n", l.router, "link", "set", l.routerDev, "up"},
		{"ip", "netns", "exec", l.router, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
		{"ip", "-n", l.ns, "addr", "add", l.PeerIP.String() + "/30", "dev", viewerDev},
		{"ip", "-n", l.ns, "link", "set", viewerDev, "up"},
		{"ip", "-n", l.ns, "link", "set", "lo", "up"},
		{"ip", "-n", l.ns, "route", "add", "default", "via", routerOut.String()},
		{"ip", "route", "add", l.PeerIP.String() + "/32", "via", routerIn.String()},
		// Router → viewer: the rate limit with its bounded queue (then the delay, below).
		{"ip", "netns", "exec", l.router, "tc", "qdisc", "add", "dev", l.routerDev, "root", "handle", "1:", "tbf",
			"rate", fmt.Sprint(opts.Rate) + "bit", "burst", "16kb", "latency", fmt.Sprintf("%dms", opts.Queue.Milliseconds())},
	}
	for _, st := range steps {
		if err := run(ctx, st[0], st[1:]...); err != nil {
			l.Close()
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	if opts.Delay > 0 {
		// netem is a module some kernels (containers) lack: the link is then rate-limited only.
		delay := fmt.Sprintf("%dms", opts.Delay.Milliseconds())
		if err := run(ctx, "ip", "netns", "exec", l.router, "tc", "qdisc", "add", "dev", l.routerDev, "parent", "1:1", "handle", "10:", "netem", "delay", delay); err != nil {
			l.NoDelay = err.Error()
		} else if err := run(ctx, "ip", "netns", "exec", l.router, "tc", "qdisc", "add", "dev", l.hostDev+"r", "root", "netem", "delay", delay); err != nil {
			l.NoDelay = err.Error()
		}
	}
	f, err := os.Open("/var/run/netns/" + l.ns)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	l.nsHandle = f
	return l, nil
}

// Close removes the namespaces (and with them the veth pairs, routes and shaping).
func (l *Link) Close() error {
	if l.nsHandle != nil {
		l.nsHandle.Close()
	}
	_ = run(context.Background(), "ip", "link", "del", l.hostDev)
	_ = run(context.Background(), "ip", "netns", "del", l.router)
	return run(context.Background(), "ip", "netns", "del", l.ns)
}

// Drops returns how many packets the router's shaping dropped (queue overflow).
func (l *Link) Drops() (int, error) {
	out, err := exec.Command("ip", "netns", "exec", l.router, "tc", "-s", "qdisc", "show", "dev", l.routerDev).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("tc -s qdisc show dev %s in %s: %w: %s", l.routerDev, l.router, err, out)
	}
	total := 0
	for _, line := range bytes.Split(out, []byte("\n")) {
		var sent, pkts, dropped int
		if n, _ := fmt.Sscanf(string(bytes.TrimSpace(line)), "Sent %d bytes %d pkt (dropped %d", &sent, &pkts, &dropped); n == 3 {
			total += dropped
		}
	}
	return total, nil
}

// ReceiveBufferErrors returns how many UDP datagrams the namespace dropped because a
// socket's receive buffer was full (the receiving program did not read in time): losses
// that are not the link's.
func (l *Link) ReceiveBufferErrors() (int, error) {
	out, err := exec.Command("ip", "netns", "exec", l.ns, "cat", "/proc/net/snmp").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("read /proc/net/snmp in %s: %w: %s", l.ns, err, out)
	}
	var header []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		for i, name := range header {
			if name == "RcvbufErrors" && i < len(f) {
				return strconv.Atoi(f[i])
			}
		}
	}
	return 0, fmt.Errorf("no Udp RcvbufErrors in /proc/net/snmp of %s", l.ns)
}

// Net returns a pion network whose sockets are opened inside the namespace and whose
// interfaces are the namespace's. readBuffer, when positive, sizes each UDP socket's receive
// buffer (SO_RCVBUF, at most net.core.rmem_max), as browsers size theirs: a test process on
// a busy machine may not read for a while, and what the socket drops then is not the link's.
func (l *Link) Net(readBuffer int) (transport.Net, error) {
	var n *stdnet.Net
	err := l.inNS(func() error {
		var err error
		n, err = stdnet.NewNet()
		return err
	})
	if err != nil {
		return nil, err
	}
	return &nsNet{Net: n, l: l, readBuffer: readBuffer}, nil
}

// inNS runs fn on a thread that has entered the namespace; the thread is thrown away after
// (its goroutine ends while locked to it), so no other goroutine ever runs in the namespace.
func (l *Link) inNS(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := unix.Setns(int(l.nsHandle.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("netshape: enter namespace %s: %w", l.ns, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// nsNet opens sockets in the namespace; everything else is the standard network's.
type nsNet struct {
	*stdnet.Net
	l          *Link
	readBuffer int
}

func (n *nsNet) sized(c any) {
	if b, ok := c.(interface{ SetReadBuffer(int) error }); ok && n.readBuffer > 0 {
		_ = b.SetReadBuffer(n.readBuffer)
	}
}

func (n *nsNet) ListenPacket(network, address string) (c net.PacketConn, err error) {
	err = n.l.inNS(func() error { c, err = n.Net.ListenPacket(network, address); return err })
	if err != nil {
		return nil, err
	}
	n.sized(c)
	return c, nil
}

func (n *nsNet) ListenUDP(network string, laddr *net.UDPAddr) (c transport.UDPConn, err error) {
	err = n.l.inNS(func() error { c, err = n.Net.ListenUDP(network, laddr); return err })
	if err != nil {
		return nil, err
	}
	n.sized(c)
	return c, nil
}

func (n *nsNet) DialUDP(network string, laddr, raddr *net.UDPAddr) (c transport.UDPConn, err error) {
	err = n.l.inNS(func() error { c, err = n.Net.DialUDP(network, laddr, raddr); return err })
	return c, err
}

func (n *nsNet) Dial(network, address string) (c net.Conn, err error) {
	err = n.l.inNS(func() error { c, err = n.Net.Dial(network, address); return err })
	return c, err
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %w: %s", name, args, err, bytes.TrimSpace(out))
	}
	return nil
}
