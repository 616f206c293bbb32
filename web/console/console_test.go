package console

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
)

// RFC 6238 appendix B, SHA-1 (secret "12345678901234567890"), 6 digits.
func TestTOTPVectors(t *testing.T) {
	secret := b32.EncodeToString([]byte("12345678901234567890"))
	for _, tc := range []struct {
		unix int64
		want string
	}{{59, "287082"}, {1111111109, "081804"}, {1111111111, "050471"}, {1234567890, "005924"}, {2000000000, "279037"}} {
		got, err := TOTPCodeAt(secret, time.Unix(tc.unix, 0))
		if err != nil || got != tc.want {
			t.Fatalf("code at %d = %s, %v; want %s", tc.unix, got, err, tc.want)
		}
	}
	now := time.Unix(1111111111, 0)
	prev, _ := TOTPCodeAt(secret, now.Add(-30*time.Second))
	if step, ok := matchTOTP(secret, prev, now); !ok || step != totpStep(now)-1 {
		t.Fatalf("previous step's code: %d %v", step, ok)
	}
	old, _ := TOTPCodeAt(secret, now.Add(-90*time.Second))
	if _, ok := matchTOTP(secret, old, now); ok {
		t.Fatal("a code three steps old was accepted")
	}
	if _, ok := matchTOTP(secret, "12345", now); ok {
		t.Fatal("a short code was accepted")
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{"/devices?q=a": "/devices?q=a", "//evil.example": "/", "https://evil.example": "/",
		"/\t/evil.example": "/", "/\n/evil.example": "/", "/devices\\..": "/",
		"/\\evil.example": "/", "/login": "/", "": "/"} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSameOrigin(t *testing.T) {
	c, err := New(Options{PublicURL: "https://mdm.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		origin, site string
		want         bool
	}{{"https://mdm.example.com", "same-origin", true}, {"", "", true}, {"https://evil.example", "", false},
		{"", "cross-site", false}, {"null", "same-origin", false}, {"http://127.0.0.1:8080", "same-origin", true}} {
		r := httptest.NewRequest("POST", "http://127.0.0.1:8080/logout", nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if tc.site != "" {
			r.Header.Set("Sec-Fetch-Site", tc.site)
		}
		if got := c.sameOrigin(r); got != tc.want {
			t.Errorf("origin %q site %q: %v, want %v", tc.origin, tc.site, got, tc.want)
		}
	}
	if !c.secure || c.cookieName("mdmd_session") != "__Host-mdmd_session" {
		t.Fatal("an https public URL must give Secure, __Host- cookies")
	}
}

func TestHome(t *testing.T) {
	for _, tc := range []struct {
		role       mdmd.Role
		next, want string
	}{
		{mdmd.RoleAdmin, "/", "/"},
		{mdmd.RoleViewer, "/", "/"},
		{mdmd.RoleAuditor, "/", "/audit"},
		{mdmd.RoleAuditor, "/audit?action=x", "/audit?action=x"},
		{mdmd.RoleHelpdesk, "/devices", "/devices"},
	} {
		if got := home(tc.role, tc.next); got != tc.want {
			t.Errorf("home(%s, %q) = %q, want %q", tc.role, tc.next, got, tc.want)
		}
	}
}
