// Package secret seals the secrets mdmd keeps in its database (private
// keys, shared secrets) with AES-256-GCM under a key that never enters the
// database, so a dump alone reveals none of them.
package secret

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the length of the key in bytes.
const KeySize = 32

// version prefixes every sealed value so the format can evolve.
var version = []byte("mdmd-sealed-v1:")

// Box seals and opens values with one key.
type Box struct {
	aead cipher.AEAD
	// ID is a short fingerprint of the key, safe to log.
	ID string
}

// New returns a Box for a 32-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secret key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append([]byte("mdmd key id:"), key...))
	return &Box{aead: aead, ID: hex.EncodeToString(sum[:4])}, nil
}

// Seal encrypts plaintext. The label is authenticated but not stored: a
// sealed value opens only under the label it was sealed with, so a value
// cannot be moved to another row and opened as something else.
func (b *Box) Seal(plaintext []byte, label string) ([]byte, error) {
	nonce := make([]byte, b.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := append([]byte{}, version...)
	out = append(out, nonce...)
	return b.aead.Seal(out, nonce, plaintext, []byte(label)), nil
}

// IsSealed reports whether b looks like a value from Seal.
func IsSealed(b []byte) bool { return bytes.HasPrefix(b, version) }

// ErrOpen means a sealed value did not decrypt: a wrong key, a wrong label
// or tampered bytes.
var ErrOpen = errors.New("secret: cannot open sealed value (wrong MDMD_SECRET_KEY or tampered data)")

// Open decrypts a value produced by Seal with the same label.
func (b *Box) Open(sealed []byte, label string) ([]byte, error) {
	if !bytes.HasPrefix(sealed, version) {
		return nil, ErrOpen
	}
	rest := sealed[len(version):]
	ns := b.aead.NonceSize()
	if len(rest) < ns+b.aead.Overhead() {
		return nil, ErrOpen
	}
	plain, err := b.aead.Open(nil, rest[:ns], rest[ns:], []byte(label))
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}

// ParseKey decodes a key given as base64 (standard or URL alphabet, padded
// or not) or as 64 hex digits.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) == 2*KeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != KeySize {
				return nil, fmt.Errorf("decodes to %d bytes, want %d", len(k), KeySize)
			}
			return k, nil
		}
	}
	return nil, fmt.Errorf("not base64 or hex (generate one with: openssl rand -base64 32)")
}

// LoadOrCreateKeyFile reads the key file at path, creating it with a fresh
// random key (mode 0600) if it does not exist. created reports a new file.
func LoadOrCreateKeyFile(path string) (key []byte, created bool, err error) {
	data, err := os.ReadFile(path)
	if err == nil {
		if fi, serr := os.Stat(path); serr == nil && fi.Mode().Perm()&0o077 != 0 {
			return nil, false, fmt.Errorf("key file %s is readable by group or others (mode %o); chmod 600 it", path, fi.Mode().Perm())
		}
		key, err = ParseKey(string(data))
		if err != nil {
			return nil, false, fmt.Errorf("key file %s: %w", path, err)
		}
		return key, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	key = make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, err
	}
	// Write a temporary file, then link it into place: the link fails if
	// another process got there first, and nobody ever reads a half-written key.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".secret-key-*")
	if err != nil {
		return nil, false, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, false, err
	}
	if _, err := tmp.WriteString(base64.StdEncoding.EncodeToString(key) + "\n"); err != nil {
		tmp.Close()
		return nil, false, err
	}
	if err := tmp.Close(); err != nil {
		return nil, false, err
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return LoadOrCreateKeyFile(path)
	} else if err != nil {
		return nil, false, err
	}
	return key, true, nil
}
