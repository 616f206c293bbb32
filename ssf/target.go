package ssf

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// Push targets. A receiver names the URL mdmd POSTs its SETs to, so
// without a check a receiver token could make mdmd reach services that
// only mdmd's network can (server-side request forgery). Unless
// Options.AllowPrivateTargets, push URLs must be https, a host that is an
// internal address literal (or localhost) is refused when the stream is
// configured, and the push client refuses to connect to an internal
// address whatever name resolved to it (DNS rebinding, names that point
// inside, numeric forms some resolvers accept).

// internalPrefixes are ranges that netip's predicates do not cover and
// that no receiver on the internet has.
var internalPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network"
	netip.MustParsePrefix("::/96"),          // IPv4-compatible (deprecated), :: and ::1 included
	netip.MustParsePrefix("100::/64"),       // discard-only
	netip.MustParsePrefix("100.64.0.0/10"),  // shared address space (carrier-grade NAT)
	netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, and the broadcast address
	netip.MustParsePrefix("fec0::/10"),      // site-local (deprecated)
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use IPv4/IPv6 translation
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96") // well-known NAT64: an IPv4 address in the last 32 bits
	sixToFour = netip.MustParsePrefix("2002::/16")    // 6to4: an IPv4 address in bits 16 to 47
)

// internalAddr reports whether a push may not reach ip: loopback,
// private (RFC 1918, RFC 4193), link-local, unspecified, multicast or
// otherwise reserved, including IPv4 addresses wrapped in IPv6.
func internalAddr(ip netip.Addr) bool {
	if !ip.IsValid() {
		return true
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		b := ip.As16()
		switch {
		case nat64.Contains(ip):
			return internalAddr(netip.AddrFrom4([4]byte(b[12:16])))
		case sixToFour.Contains(ip):
			return internalAddr(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	if ip.IsUnspecified() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() {
		return true
	}
	for _, p := range internalPrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// internalHost reports whether a URL's host names an internal address
// outright: localhost (and its subdomains) or an internal IP literal. A
// DNS name is checked when it is dialled.
func internalHost(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		return internalAddr(ip)
	}
	return false
}

// numericHost reports a host that is not an IP address in standard form
// yet whose last label is a number (127.1, 2130706433, 0x7f.1): no DNS
// name ends so (RFC 3696 §2), and some resolvers read them as IPv4
// addresses.
func numericHost(host string) bool {
	h := strings.TrimSuffix(host, ".")
	if _, err := netip.ParseAddr(h); err == nil {
		return false
	}
	last := h[strings.LastIndexByte(h, '.')+1:]
	if strings.HasPrefix(strings.ToLower(last), "0x") {
		return true
	}
	return last != "" && strings.Trim(last, "0123456789") == ""
}

// isLoopback reports the hosts plain http may go to when private targets
// are allowed.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// refuseInternal is the push dialer's Control: it runs on the address
// about to be connected to, after name resolution, so no name can lead
// the push inside.
func refuseInternal(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("refusing to connect to %s: not an IP address and port", address)
	}
	if internalAddr(ap.Addr()) {
		return fmt.Errorf("refusing to connect to %s: an internal address (loopback, private, link-local, multicast or reserved)", ap.Addr())
	}
	return nil
}

// pushClient is the default push client: no redirects followed, no proxy
// (the address check must apply to the receiver itself), and, unless
// allowPrivate, no connection to an internal address.
func pushClient(idlePerHost int, allowPrivate bool) *http.Client {
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if !allowPrivate {
		dialer.Control = refuseInternal
		tr.Proxy = nil
	}
	tr.DialContext = dialer.DialContext
	tr.MaxIdleConnsPerHost = idlePerHost
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
