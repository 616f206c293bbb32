package secret

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func TestSealOpen(t *testing.T) {
	box, err := New(testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := New(testKey(2))
	plain := []byte("-----BEGIN PRIVATE KEY----- not really")
	sealed, err := box.Seal(plain, "keypair:ca")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, plain[:10]) {
		t.Fatal("sealed value contains the plaintext")
	}
	again, _ := box.Seal(plain, "keypair:ca")
	if bytes.Equal(sealed, again) {
		t.Fatal("two seals of one value are equal: nonce reused")
	}
	got, err := box.Open(sealed, "keypair:ca")
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	tampered := append([]byte{}, sealed...)
	tampered[len(tampered)-1] ^= 1
	tests := []struct {
		name   string
		box    *Box
		sealed []byte
		label  string
	}{
		{"wrong key", other, sealed, "keypair:ca"},
		{"wrong label", box, sealed, "keypair:profile-signer"},
		{"tampered", box, tampered, "keypair:ca"},
		{"truncated", box, sealed[:len(version)+5], "keypair:ca"},
		{"not sealed", box, plain, "keypair:ca"},
		{"empty", box, nil, "keypair:ca"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.box.Open(tc.sealed, tc.label); err != ErrOpen {
				t.Fatalf("Open = %v, want ErrOpen", err)
			}
		})
	}
	if _, err := New([]byte("short")); err == nil {
		t.Fatal("New accepted a short key")
	}
	if box.ID == other.ID || len(box.ID) != 8 {
		t.Fatalf("key IDs %q %q", box.ID, other.ID)
	}
}

func TestParseKey(t *testing.T) {
	k := testKey(7)
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"base64", base64.StdEncoding.EncodeToString(k), true},
		{"base64 with newline", base64.StdEncoding.EncodeToString(k) + "\n", true},
		{"raw url base64", base64.RawURLEncoding.EncodeToString(k), true},
		{"hex", strings.Repeat("07", 32), true},
		{"too short", base64.StdEncoding.EncodeToString(k[:16]), false},
		{"garbage", "not a key at all!", false},
		{"empty", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKey(tc.in)
			if tc.ok && (err != nil || !bytes.Equal(got, k)) {
				t.Fatalf("ParseKey = %x, %v", got, err)
			}
			if !tc.ok && err == nil {
				t.Fatal("accepted a bad key")
			}
		})
	}
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "secret.key")
	// Concurrent first starts all end up with the same key.
	var wg sync.WaitGroup
	keys := make([][]byte, 8)
	created := make([]bool, 8)
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			keys[i], created[i], err = LoadOrCreateKeyFile(path)
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	n := 0
	for i := range keys {
		if !bytes.Equal(keys[i], keys[0]) {
			t.Fatal("concurrent creators got different keys")
		}
		if created[i] {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d creators reported creating the file", n)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v", fi.Mode(), err)
	}
	k, made, err := LoadOrCreateKeyFile(path)
	if err != nil || made || !bytes.Equal(k, keys[0]) {
		t.Fatalf("reload = %v, %v", made, err)
	}
	os.Chmod(path, 0o644)
	if _, _, err := LoadOrCreateKeyFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key file accepted: %v", err)
	}
	os.Chmod(path, 0o600)
	os.WriteFile(path, []byte("garbage"), 0o600)
	if _, _, err := LoadOrCreateKeyFile(path); err == nil {
		t.Fatal("garbage key file accepted")
	}
}
