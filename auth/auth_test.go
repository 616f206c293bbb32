package auth

import (
	"strings"
	"testing"
)

func TestPasswords(t *testing.T) {
	hash, err := HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(hash, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Fatalf("hash format %q", hash)
	}
	other, _ := HashPassword("correct horse battery")
	if other == hash {
		t.Fatal("same hash twice: salt missing")
	}
	tests := []struct {
		name, hash, password string
		want                 bool
	}{
		{"right", hash, "correct horse battery", true},
		{"wrong", hash, "correct horse battery!", false},
		{"empty", hash, "", false},
		{"not argon2id", "$2a$10$abcdefghijklmnopqrstuv", "x", false},
		{"truncated", hash[:len(hash)-10], "correct horse battery", false},
		{"absurd memory", strings.Replace(hash, "m=65536", "m=99999999", 1), "correct horse battery", false},
		{"garbage", "garbage", "garbage", false},
	}
	for _, tc := range tests {
		if got := CheckPassword(tc.hash, tc.password); got != tc.want {
			t.Errorf("%s: CheckPassword = %v", tc.name, got)
		}
	}
	for _, bad := range []string{"short", strings.Repeat("x", 2000)} {
		if _, err := HashPassword(bad); err == nil {
			t.Errorf("HashPassword(%d chars) accepted", len(bad))
		}
	}
	if p := RandomPassword(); len(p) != 24 || !CheckPassword(mustHash(t, p), p) {
		t.Fatalf("random password %q", p)
	}
}

func mustHash(t *testing.T, p string) string {
	h, err := HashPassword(p)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestTokens(t *testing.T) {
	a, ha := NewToken()
	b, hb := NewToken()
	if a == b || ha == hb || !strings.HasPrefix(a, TokenPrefix) || len(a) != len(TokenPrefix)+43 {
		t.Fatalf("tokens %q %q", a, b)
	}
	if HashToken(a) != ha || len(ha) != 64 {
		t.Fatal("hash mismatch")
	}
	if p := DisplayPrefix(a); p != a[:11] {
		t.Fatalf("display prefix %q", p)
	}
}
