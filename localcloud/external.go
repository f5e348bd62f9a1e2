package localcloud

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/edgecam/edgecam/iot"
	"go.uber.org/zap"
)

// ServeFleetOn runs the fleet provisioning responder as a client of another MQTT broker
// (mosquitto, for instance) until ctx ends, so that the same flow can be tested against a
// second real broker. It connects with localcloud's responder certificate. Such a broker
// cannot tell who sent a request, so replies go to every subscriber of the reply topic.
func (c *Cloud) ServeFleetOn(ctx context.Context, endpoint string, rootCAs *x509.CertPool) error {
	cert, err := tls.LoadX509KeyPair(c.paths.ResponderCert, c.paths.ResponderKey)
	if err != nil {
		return fmt.Errorf("localcloud responder certificate: %w", err)
	}
	log := c.log.Named("responder").With(zap.String("broker", endpoint))
	conn, err := iot.Dial(ctx, iot.Options{
		Endpoint: endpoint, RootCAs: rootCAs, Certificate: cert,
		ClientID: "localcloud-fleet-responder", Log: log,
	})
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	for _, f := range FleetRequestFilters {
		conn.Handle(f, func(m iot.Message) {
			topic, payload, ok := c.fleet.handle(fleetRequest{Topic: m.Topic, Payload: m.Payload})
			if !ok {
				return
			}
			log.Info("fleet provisioning", zap.String("request", m.Topic), zap.String("reply", topic))
			go func() {
				if err := conn.Publish(ctx, topic, payload, 1); err != nil {
					log.Warn("fleet provisioning reply failed", zap.Error(err))
				}
			}()
		})
	}
	if err := conn.Subscribe(ctx, FleetRequestFilters...); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// CAPool returns a pool holding localcloud's CA, for clients of its endpoints.
func (c *Cloud) CAPool() *x509.CertPool { return c.ca.pool() }

// IssueServerCertificate issues a server certificate for hosts from localcloud's CA, for an
// external broker that devices should trust like localcloud itself.
func (c *Cloud) IssueServerCertificate(hosts ...string) (certPEM, keyPEM []byte, err error) {
	return c.ca.serverCert(hosts)
}
