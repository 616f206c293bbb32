package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/http"
	"testing"

	"github.com/mdmd/mdmd/apple/applesim"
)

// TestAppleOverTLS enrolls over HTTPS and then authenticates a device by
// its identity certificate in TLS, without Mdm-Signature.
func TestAppleOverTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, roots := selfSigned(t, dir)
	env := newAppleEnv(t, backends(t)[0].URL, "--tls-cert", certFile, "--tls-key", keyFile)
	url, _ := env.link(t, map[string]any{"one_time": true})
	if url[:8] != "https://" {
		t.Fatalf("link URL %s is not https", url)
	}
	sim := applesim.New("00008110-0000000000E00001", "SNE1", applesim.DefaultPosture)
	sim.HTTP = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	if err := sim.Enroll(context.Background(), url, env.trust); err != nil {
		t.Fatalf("enroll over HTTPS: %v", err)
	}
	mtls := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots,
		Certificates: []tls.Certificate{{Certificate: [][]byte{sim.Cert().Raw}, PrivateKey: sim.Key()}}}}}
	send := func(udid string) int {
		body := mustPlist(t, map[string]any{"UDID": udid, "Status": "Idle"})
		req, _ := http.NewRequest("PUT", sim.ServerURL(), bytes.NewReader(body))
		resp, err := mtls.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := send(sim.UDID); got != 200 {
		t.Fatalf("mTLS Idle = %d", got)
	}
	if got := send("00008110-0000000000E00099"); got != 403 {
		t.Fatalf("mTLS with another UDID = %d", got)
	}
}
