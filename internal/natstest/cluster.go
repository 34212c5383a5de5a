// Package natstest starts real NATS JetStream clusters in the test's process, for the
// tests of the JetStream store and of sluice serve in cluster mode. Nothing but tests
// imports it.
package natstest

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is a real JetStream cluster of three nats-server nodes in this process, on
// loopback ports, each with its own store directory and the full route list, as a
// production cluster is configured.
type Cluster struct {
	// Opts are the nodes' options: ports and store directories stay across restarts.
	Opts    []*server.Options
	servers []*server.Server
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Start starts a cluster with its store directories under dir and waits for its meta
// leader.
func Start(dir string) (*Cluster, error) {
	c := &Cluster{}
	var routes []string
	var cports, ports []int
	for range 3 {
		cp, err := freePort()
		if err != nil {
			return nil, err
		}
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		cports, ports = append(cports, cp), append(ports, p)
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", cp))
	}
	for i := range 3 {
		c.Opts = append(c.Opts, &server.Options{
			ServerName: fmt.Sprintf("n%d", i),
			Host:       "127.0.0.1",
			Port:       ports[i],
			JetStream:  true,
			StoreDir:   filepath.Join(dir, fmt.Sprintf("n%d", i)),
			Cluster:    server.ClusterOpts{Name: "sluice-test", Host: "127.0.0.1", Port: cports[i]},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
			NoLog:      true,
			NoSigs:     true,
		})
		c.servers = append(c.servers, nil)
	}
	for i := range 3 {
		if err := c.StartNode(i); err != nil {
			c.Shutdown()
			return nil, err
		}
	}
	if err := c.WaitLeader(); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

// StartNode (re)starts node i with its options, ports and store directory.
func (c *Cluster) StartNode(i int) error {
	s, err := server.NewServer(c.Opts[i])
	if err != nil {
		return err
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("node %d not ready", i)
	}
	c.servers[i] = s
	return nil
}

// WaitLeader waits until the running nodes have a JetStream meta leader and are current.
func (c *Cluster) WaitLeader() error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		leader, current := false, true
		for _, s := range c.servers {
			if s == nil || !s.Running() {
				continue
			}
			leader = leader || s.JetStreamIsLeader()
			current = current && s.JetStreamIsCurrent()
		}
		if leader && current {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no JetStream meta leader after 20s")
}

// Stop shuts node i down, as a crash of its process would (its store stays).
func (c *Cluster) Stop(i int) {
	if s := c.servers[i]; s != nil {
		s.Shutdown()
		s.WaitForShutdown()
		c.servers[i] = nil
	}
}

// Shutdown stops every node.
func (c *Cluster) Shutdown() {
	for i := range c.servers {
		c.Stop(i)
	}
}

// URLs lists every node's client URL, as a Sluice instance is configured.
func (c *Cluster) URLs() string {
	var u []string
	for _, o := range c.Opts {
		u = append(u, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return strings.Join(u, ",")
}
