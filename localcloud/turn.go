package localcloud

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"
)

// turnRealm is the realm of localcloud's TURN server.
const turnRealm = "edgecam-localcloud"

// turnTTL is how long the credentials GetIceServerConfig hands out stay valid (AWS: 300 s).
const turnTTL = 300 * time.Second

// turnServer is a real TURN (and STUN) server on UDP, as KVS runs for its channels. Its
// credentials are time-limited (TURN REST style): GetIceServerConfig mints them.
type turnServer struct {
	srv    *turn.Server
	conn   net.PacketConn
	addr   string
	secret string
}

func startTURN(host string, port int) (*turnServer, error) {
	conn, err := net.ListenPacket("udp4", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("TURN listener: %w (pick another --turn-port)", err)
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	secret := hex.EncodeToString(b)
	relayIP := net.ParseIP(host)
	if relayIP == nil || relayIP.IsUnspecified() {
		relayIP = net.IPv4(127, 0, 0, 1)
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelWarn
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm:         turnRealm,
		LoggerFactory: lf,
		AuthHandler:   turn.NewLongTermAuthHandler(secret, lf.NewLogger("turn")),
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn:            conn,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{RelayAddress: relayIP, Address: relayIP.String()},
		}},
	})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("TURN server: %w", err)
	}
	return &turnServer{srv: srv, conn: conn, addr: conn.LocalAddr().String(), secret: secret}, nil
}

// credentials mints a username and password valid for turnTTL.
func (t *turnServer) credentials() (user, pass string, err error) {
	return turn.GenerateLongTermCredentials(t.secret, turnTTL)
}

// uris are the server's TURN URIs, in GetIceServerConfig's form.
func (t *turnServer) uris() []string {
	return []string{"turn:" + t.addr + "?transport=udp"}
}

func (t *turnServer) close() error { return t.srv.Close() }
