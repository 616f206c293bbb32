package storagetest

import (
	"testing"

	"github.com/mdmd/mdmd/storage"
)

// consoleProfilesTests are the conformance tests of the store methods behind these
// console pages (none yet).
func consoleProfilesTests() []struct {
	name string
	fn   func(t *testing.T, s *storage.Store)
} {
	return nil
}
