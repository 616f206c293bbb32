package demo

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
)

// A small demo fleet enrolls on both platforms, reports posture, and ends
// up in a mix of compliance states, which is what the demo is for.
func TestDemoFleet(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan [2]string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Start(ctx, Options{DataDir: t.TempDir(), Listen: "127.0.0.1:0", IPhones: 10, Androids: 10, CheckIn: time.Second,
			Ready: func(url, token string) { ready <- [2]string{url, token} }}, io.Discard, io.Discard)
	}()
	var base, token string
	select {
	case r := <-ready:
		base, token = r[0], r[1]
	case err := <-done:
		t.Fatalf("demo ended: %v", err)
	case <-time.After(90 * time.Second):
		t.Fatal("the demo fleet was not ready after 90 s")
	}
	get := func(path string, out any) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var page struct{ Items []mdmd.Device }
		get("/api/v1/devices?limit=100", &page)
		states := map[string]int{}
		platforms := map[mdmd.Platform]int{}
		for _, d := range page.Items {
			platforms[d.Platform]++
			var c mdmd.DeviceCompliance
			req, _ := http.NewRequest("GET", base+"/api/v1/devices/"+d.ID+"/compliance", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				if resp.StatusCode == 200 {
					_ = json.NewDecoder(resp.Body).Decode(&c)
					states[c.State]++
				}
				resp.Body.Close()
			}
		}
		if platforms[mdmd.PlatformIOS] == 10 && platforms[mdmd.PlatformAndroid] == 10 &&
			states["compliant"] >= 5 && states["noncompliant"]+states["in_grace"] >= 5 {
			t.Logf("platforms %v, states %v", platforms, states)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("platforms %v, states %v: want 10 of each platform and a mix of states", platforms, states)
		}
		time.Sleep(500 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil && err != context.Canceled {
		t.Fatalf("demo: %v", err)
	}
}
