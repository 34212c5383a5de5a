package bench

import (
	"cmp"
	"fmt"
	"slices"
)

// A run drives one kind of server (Config.Target) in one protocol (Config.Protocol):
//
//	target           protocol            streams at              followers
//	sluice           busl (the default)  /streams/{key}          sse, raw, websocket
//	sluice           durable-streams     /v1/stream/{key}        sse, long-poll
//	durable-streams  durable-streams     /v1/stream/{key}        sse, long-poll
//	nchan            nchan (its own)     /pub/{key}, /sub/{key}  sse (deploy/nchan-bench.conf)
//
// The target says where the server's figures come from: a Sluice server has /metrics;
// the others have none, and are measured from /proc (Config.ServerPID). The protocol
// says how lines are published and followed; each follower checks the same things in
// each: exactly the published bytes, in order, once, and the stream's end.

// The targets.
const (
	TargetSluice  = "sluice"          // a Sluice server, with its /metrics
	TargetNchan   = "nchan"           // Nchan in nginx (nchan.go)
	TargetDurable = "durable-streams" // any Durable Streams server (durable.go)
)

// The protocols a Sluice target is spoken to in; the other targets speak their own.
const (
	ProtocolBusl    = "busl"            // busl's, at /streams/{key}
	ProtocolDurable = "durable-streams" // Durable Streams, at /v1/stream/{key}
	protocolNchan   = "nchan"           // Nchan's publisher and subscriber locations
)

// protocolTransports are the follower transports of each protocol, in the order that
// "mix" cycles through them.
var protocolTransports = map[string][]string{
	ProtocolBusl:    Transports,
	ProtocolDurable: {"sse", "long-poll"},
	protocolNchan:   {"sse"},
}

// transportHint says which transports a protocol takes, when one it lacks is asked for.
var transportHint = map[string]string{
	ProtocolBusl:    "busl's protocol is followed with sse, raw, websocket or mix (of the three); long-poll is Durable Streams'",
	ProtocolDurable: "Durable Streams is followed with sse, long-poll or mix (of both)",
	protocolNchan:   "Nchan is followed with sse only",
}

// Resolve returns the protocol a run speaks to a server of kind target ("" is sluice),
// asked for protocol ("" for the target's own: busl for Sluice), and the followers'
// transport ("" is sse), or why they do not go together: an error that starts with the
// name of the setting at fault (target, protocol or transport) and its value.
func Resolve(target, protocol, transport string) (proto, tr string, err error) {
	switch target = cmp.Or(target, TargetSluice); {
	case target == TargetSluice:
		proto = cmp.Or(protocol, ProtocolBusl)
		if proto != ProtocolBusl && proto != ProtocolDurable {
			return "", "", fmt.Errorf("protocol %q: want busl or durable-streams", protocol)
		}
	case target != TargetNchan && target != TargetDurable:
		return "", "", fmt.Errorf("target %q: want sluice, nchan or durable-streams", target)
	case protocol != "" && protocol != target:
		return "", "", fmt.Errorf("protocol %q: a %s server speaks its own; the choice of protocol is for a Sluice target", protocol, target)
	default:
		proto = target
	}
	tr = cmp.Or(transport, "sse")
	ts := protocolTransports[proto]
	if !slices.Contains(ts, tr) && (tr != "mix" || len(ts) < 2) {
		return "", "", fmt.Errorf("transport %q: %s", tr, transportHint[proto])
	}
	return proto, tr, nil
}
