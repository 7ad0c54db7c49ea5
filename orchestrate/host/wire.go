package host

import (
	"crypto/ed25519"
	"encoding/json"

	"scatter/artifact/core"
	"scatter/orchestrate/command"
	"scatter/orchestrate/membership"
	"scatter/orchestrate/trust"
)

// The wire forms of what a host says about itself, exported for tools and
// for tests that play a hostile member: each is sealed by signer's key, and
// a receiver counts it only if the roster gives signer that key and the
// statement is about signer.

// SignMeta adds key's public half and its signature, as name reachable at
// addr, to an advertisement.
func SignMeta(name, addr string, m membership.Meta, key ed25519.PrivateKey) membership.Meta {
	m.Key = encodeKey(key.Public().(ed25519.PublicKey))
	m.Sig = encodeKey(trust.Sign(trust.KindMeta, name, claimOf(addr, m), key))
	return m
}

// HoldsMessage is the gossip broadcast saying that host holds release.
func HoldsMessage(signer, host string, release core.ReleaseID, key ed25519.PrivateKey) ([]byte, error) {
	note, err := json.Marshal(holdsNote{Host: host, Release: release})
	if err != nil {
		return nil, err
	}
	sealed, err := trust.Seal(trust.KindHolds, signer, note, key)
	if err != nil {
		return nil, err
	}
	return append([]byte{msgHolds}, sealed...), nil
}

// AckMessage is the direct message carrying an ack to its controller.
func AckMessage(signer string, a *command.Ack, key ed25519.PrivateKey) ([]byte, error) {
	b, err := command.EncodeAck(a)
	if err != nil {
		return nil, err
	}
	sealed, err := trust.Seal(trust.KindAck, signer, b, key)
	if err != nil {
		return nil, err
	}
	return append([]byte{msgAck}, sealed...), nil
}

// StateMessage is a push/pull state blob claiming holds.
func StateMessage(signer string, holds []core.ReleaseID, key ed25519.PrivateKey) ([]byte, error) {
	b, err := json.Marshal(stateBlob{Holds: holds})
	if err != nil {
		return nil, err
	}
	return trust.Seal(trust.KindState, signer, b, key)
}

// UnsignedAckMessage is an ack in the wire form of before host keys:
// unsealed. Every host refuses it as malformed; tests send it to show so.
func UnsignedAckMessage(a *command.Ack) ([]byte, error) {
	b, err := command.EncodeAck(a)
	if err != nil {
		return nil, err
	}
	return append([]byte{msgAck}, b...), nil
}

// SignedCommand returns the deploy-signed command that a gossip or direct
// message carries (command.Open checks it), or false if it carries none.
func SignedCommand(msg []byte) ([]byte, bool) {
	if len(msg) < 2 || msg[0] != msgCommand {
		return nil, false
	}
	return msg[1:], true
}

// SignedAnnouncement returns the deploy-signed release announcement that
// a gossip message carries (swarm.OpenAnnouncement checks it), or false
// if it carries none.
func SignedAnnouncement(msg []byte) ([]byte, bool) {
	if len(msg) < 2 || msg[0] != msgAnnounce {
		return nil, false
	}
	return msg[1:], true
}
