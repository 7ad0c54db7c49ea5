package membership

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrKeyFileMode is returned by LoadKeyFile for a key file that the file's
// group or others may read: anyone who reads the key can decrypt gossip and
// join the cluster as a pending host.
var ErrKeyFileMode = errors.New("readable by group or others")

// LoadKeyFile reads a gossip key file: one base64 key (16, 24 or 32 bytes)
// per line, the first being the key gossip is sent under and the others
// keys still (or already) accepted, which is how a key rotates (SetKeys).
// Blank lines and lines starting with # are skipped. A file whose mode lets
// the group or others read it is refused, with the fix in the error.
func LoadKeyFile(path string) (primary []byte, others [][]byte, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("cluster key: %w", err)
	}
	if m := st.Mode().Perm(); m&0o077 != 0 {
		return nil, nil, fmt.Errorf("cluster key %s: mode %04o: %w; run: chmod 600 %s", path, m, ErrKeyFileMode, path)
	}
	var keys [][]byte
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, nil, fmt.Errorf("cluster key %s:%d: not base64: %w", path, line, err)
		}
		switch len(k) {
		case 16, 24, 32:
		default:
			return nil, nil, fmt.Errorf("cluster key %s:%d: %d bytes, want 16, 24 or 32 (make one with: head -c 32 /dev/urandom | base64)", path, line, len(k))
		}
		for _, o := range keys {
			if bytes.Equal(o, k) {
				return nil, nil, fmt.Errorf("cluster key %s:%d: the same key twice", path, line)
			}
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("cluster key %s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, nil, fmt.Errorf("cluster key %s: no key in the file (make one with: umask 077; head -c 32 /dev/urandom | base64 > %s)", path, path)
	}
	return keys[0], keys[1:], nil
}
