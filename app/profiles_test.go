package app

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/apple/applesim"
	"github.com/mdmd/mdmd/profiles"
)

type deviceProfiles struct {
	Items []struct {
		Identifier string `json:"identifier"`
		State      string `json:"state"`
		Version    int    `json:"version"`
		OnDevice   *bool  `json:"on_device"`
		Drift      string `json:"drift"`
	} `json:"items"`
	Unmanaged []string `json:"unmanaged_on_device"`
}

func TestConfigurationProfiles(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			env := newAppleEnv(t, b.URL)
			ctx := context.Background()
			url, _ := env.link(t, map[string]any{"one_time": false})
			sim, dev := env.enroll(t, url, "00008110-0000000000A10001", applesim.DefaultPosture)
			has := func(id string) bool { return slices.Contains(sim.State().Profiles, id) }
			view := func() deviceProfiles {
				var v deviceProfiles
				env.mustDo(200, "GET", "/api/v1/devices/"+dev.ID+"/profiles", env.Token, nil).json(t, &v)
				return v
			}
			find := func(v deviceProfiles, id string) (state string, drift string, on *bool) {
				for _, it := range v.Items {
					if it.Identifier == id {
						return it.State, it.Drift, it.OnDevice
					}
				}
				return "", "", nil
			}

			// The zero-trust passcode baseline, assigned through a group.
			var passcode mdmd.Profile
			env.mustDo(201, "POST", "/api/v1/profiles", env.Token, map[string]any{"name": "Passcode baseline", "kind": "passcode", "settings": map[string]any{}}).json(t, &passcode)
			var g mdmd.Group
			env.mustDo(201, "POST", "/api/v1/groups", env.Token, map[string]string{"name": "phones"}).json(t, &g)
			env.mustDo(201, "POST", "/api/v1/profiles/"+passcode.ID+"/assignments", env.Token, map[string]string{"target_type": "group", "target_id": g.ID})
			if has(passcode.Identifier) {
				t.Fatal("installed on a device outside the group")
			}
			env.mustDo(204, "POST", "/api/v1/groups/"+g.ID+"/members", env.Token, map[string]any{"device_ids": []string{dev.ID}})
			eventually(t, 15*time.Second, "the passcode profile installed and verified", func() bool {
				st, _, on := find(view(), passcode.Identifier)
				return has(passcode.Identifier) && st == mdmd.ProfileInstalled && on != nil && *on
			})

			// An uploaded .mobileconfig, assigned to the device itself.
			wifiXML, _, err := profiles.Build(mdmd.ProfileWiFi, "com.acme.wifi", "Acme Wi-Fi", "Acme", []byte(`{"ssid":"Acme","password":"correct horse"}`))
			if err != nil {
				t.Fatal(err)
			}
			var custom mdmd.Profile
			env.mustDo(201, "POST", "/api/v1/profiles", env.Token, map[string]any{"name": "Acme Wi-Fi", "kind": "custom",
				"mobileconfig_base64": base64.StdEncoding.EncodeToString(wifiXML)}).json(t, &custom)
			env.mustDo(409, "POST", "/api/v1/profiles", env.Token, map[string]any{"name": "again", "kind": "custom",
				"mobileconfig_base64": base64.StdEncoding.EncodeToString(wifiXML)})
			env.mustDo(201, "POST", "/api/v1/profiles/"+custom.ID+"/assignments", env.Token, map[string]string{"target_type": "device", "target_id": dev.ID})
			eventually(t, 15*time.Second, "the uploaded profile installed", func() bool {
				st, _, _ := find(view(), "com.acme.wifi")
				return has("com.acme.wifi") && st == mdmd.ProfileInstalled
			})
			// The Wi-Fi password is in the profile and in the InstallProfile
			// command, and in neither readable in the database.
			dump := dumpTables(t, env.srv.Store().DB(), "profiles", "commands")
			if bytes.Contains(dump, []byte("correct horse")) || bytes.Contains(dump, []byte(hex.EncodeToString([]byte("correct horse")))) {
				t.Fatal("the Wi-Fi password is readable in the database")
			}
			if got := env.mustDo(200, "GET", "/api/v1/profiles/"+custom.ID+"/mobileconfig", env.Token, nil).Body; !bytes.Contains(got, []byte("correct horse")) {
				t.Fatal("the profile does not open for an admin")
			}

			// Drift: the profile disappears from the device; the next
			// ProfileList shows it, and a sync puts it back.
			sim.DropProfile("com.acme.wifi")
			env.action(t, env.Token, dev.ID, "query", map[string]any{"queries": []string{"profile_list"}})
			if _, drift, on := find(view(), "com.acme.wifi"); drift != "missing on the device" || on == nil || *on {
				t.Fatalf("drift not shown: %q %v", drift, on)
			}
			var sync struct {
				Commands []mdmd.Command `json:"commands"`
			}
			env.mustDo(202, "POST", "/api/v1/devices/"+dev.ID+"/actions/sync-profiles", env.Token, map[string]any{}).json(t, &sync)
			env.waitFinal(t, sync.Commands)
			if !has("com.acme.wifi") {
				t.Fatal("sync did not reinstall the drifted profile")
			}
			if _, drift, _ := find(view(), "com.acme.wifi"); drift != "" {
				t.Fatalf("drift after sync: %q", drift)
			}

			// A new version is installed over the old one.
			var updated mdmd.Profile
			env.mustDo(200, "PATCH", "/api/v1/profiles/"+passcode.ID, env.Token, map[string]any{"settings": map[string]any{"min_length": 8}}).json(t, &updated)
			if updated.Version != 2 {
				t.Fatalf("version after update = %d", updated.Version)
			}
			eventually(t, 15*time.Second, "version 2 installed", func() bool {
				for _, it := range view().Items {
					if it.Identifier == passcode.Identifier {
						return it.Version == 2 && it.State == mdmd.ProfileInstalled
					}
				}
				return false
			})

			// Leaving the group removes the group's profile; unassigning
			// removes the other.
			env.mustDo(204, "DELETE", "/api/v1/groups/"+g.ID+"/members", env.Token, map[string]any{"device_ids": []string{dev.ID}})
			env.mustDo(204, "DELETE", "/api/v1/profiles/"+custom.ID+"/assignments", env.Token, map[string]string{"target_type": "device", "target_id": dev.ID})
			eventually(t, 15*time.Second, "both profiles removed", func() bool {
				return !has(passcode.Identifier) && !has("com.acme.wifi") && len(view().Items) == 0
			})
			if !has(mdmd.AppleEnrollmentProfileID) {
				t.Fatal("the enrollment profile was removed")
			}

			// Bad input changes nothing.
			env.mustDo(400, "POST", "/api/v1/profiles", env.Token, map[string]any{"name": "x", "kind": "firewall"})
			env.mustDo(400, "POST", "/api/v1/profiles", env.Token, map[string]any{"name": "x", "kind": "passcode", "settings": map[string]any{"min_length": 1}})
			env.mustDo(400, "POST", "/api/v1/profiles", env.Token, map[string]any{"name": "x", "kind": "custom", "mobileconfig_base64": "bm90IGEgcGxpc3Q="})
			env.mustDo(400, "POST", "/api/v1/profiles/"+passcode.ID+"/assignments", env.Token, map[string]string{"target_type": "user", "target_id": "x"})
			env.mustDo(404, "POST", "/api/v1/profiles/"+passcode.ID+"/assignments", env.Token, map[string]string{"target_type": "device", "target_id": "nope"})
			env.mustDo(400, "PATCH", "/api/v1/profiles/"+passcode.ID, env.Token, map[string]any{"kind": "wifi"})
			var list struct {
				Items []mdmd.Profile `json:"items"`
			}
			env.mustDo(200, "GET", "/api/v1/profiles", env.Token, nil).json(t, &list)
			if len(list.Items) != 2 {
				t.Fatalf("profiles after bad input = %d", len(list.Items))
			}
			// Deleting a profile that is still installed removes it from devices.
			env.mustDo(201, "POST", "/api/v1/profiles/"+passcode.ID+"/assignments", env.Token, map[string]string{"target_type": "device", "target_id": dev.ID})
			eventually(t, 15*time.Second, "reinstalled", func() bool { return has(passcode.Identifier) })
			env.mustDo(204, "DELETE", "/api/v1/profiles/"+passcode.ID, env.Token, nil)
			eventually(t, 15*time.Second, "removed after deletion", func() bool { return !has(passcode.Identifier) })
			_ = ctx
		})
	}
}

// dumpTables returns every column of every row of the tables as text.
func dumpTables(t *testing.T, db *sql.DB, tables ...string) []byte {
	t.Helper()
	var out bytes.Buffer
	for _, table := range tables {
		rows, err := db.Query("SELECT * FROM " + table)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				switch x := v.(type) {
				case []byte:
					out.Write(x)
				case string:
					out.WriteString(x)
				}
				out.WriteByte('|')
			}
		}
		rows.Close()
	}
	return out.Bytes()
}
