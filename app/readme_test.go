package app

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEConfigurationTable keeps the README's configuration table true:
// every setting appears with its flag and variable, and the README's test
// command is the one CI runs.
func TestREADMEConfigurationTable(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	for _, s := range settings() {
		row := "| `--" + s.flag + "` | `" + s.env + "` |"
		if !strings.Contains(readme, row) {
			t.Errorf("README lacks the configuration row for --%s / %s", s.flag, s.env)
		}
	}
	ci, err := os.ReadFile("../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	const cmd = "go test ./..."
	if !strings.Contains(readme, "```sh\n"+cmd+"\n```") || !strings.Contains(string(ci), "exec "+cmd+"\n") {
		t.Errorf("README and .ci/run must share the test command %q", cmd)
	}
	if !strings.Contains(readme, "```sh\ngo run ./cmd/mdmd serve\n```") {
		t.Error("README lacks the start command")
	}
}
