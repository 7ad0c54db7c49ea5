package membership

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
)

// ErrNoEncryption is returned by SetKeys on a node started without a
// SecretKey: a plaintext cluster cannot start encrypting without a restart.
var ErrNoEncryption = errors.New("membership: gossip is not encrypted; keys need a restart")

// SetKeys rotates the gossip keys without leaving the cluster: the node
// installs primary and others, sends under primary from now on, and stops
// accepting any key not named. A rotation takes three rounds over every
// member — add the new key as another key, make it the primary, drop the
// old one — and each round must reach every member before the next
// starts: a member then always shares the key another sends under.
func (n *Node) SetKeys(primary []byte, others [][]byte) error {
	if err := checkKeys(primary, others); err != nil {
		return fmt.Errorf("membership: %w", err)
	}
	if len(primary) == 0 {
		return errors.New("membership: a primary key is required")
	}
	kr := n.keyring
	if kr == nil {
		return ErrNoEncryption
	}
	for _, k := range append([][]byte{primary}, others...) {
		if err := kr.AddKey(k); err != nil {
			return fmt.Errorf("membership: add key: %w", err)
		}
	}
	if err := kr.UseKey(primary); err != nil {
		return fmt.Errorf("membership: use key: %w", err)
	}
	keep := append([][]byte{primary}, others...)
	for _, k := range kr.GetKeys() {
		if !slices.ContainsFunc(keep, func(x []byte) bool { return bytes.Equal(x, k) }) {
			if err := kr.RemoveKey(k); err != nil {
				return fmt.Errorf("membership: remove key: %w", err)
			}
		}
	}
	return nil
}

// Keys returns the primary gossip key and how many keys are installed in
// all (0 and nil without encryption).
func (n *Node) Keys() (primary []byte, installed int) {
	kr := n.keyring
	if kr == nil {
		return nil, 0
	}
	return kr.GetPrimaryKey(), len(kr.GetKeys())
}

func checkKeys(primary []byte, others [][]byte) error {
	if len(others) > 0 && len(primary) == 0 {
		return errors.New("other keys need a secret key")
	}
	switch len(primary) {
	case 0, 16, 24, 32:
	default:
		return fmt.Errorf("key is %d bytes, want 16, 24 or 32", len(primary))
	}
	for i, k := range others {
		switch len(k) {
		case 16, 24, 32:
		default:
			return fmt.Errorf("other key %d is %d bytes, want 16, 24 or 32", i+1, len(k))
		}
	}
	return nil
}

func cloneKeys(ks [][]byte) [][]byte {
	if ks == nil {
		return nil
	}
	out := make([][]byte, len(ks))
	for i, k := range ks {
		out[i] = bytes.Clone(k)
	}
	return out
}
