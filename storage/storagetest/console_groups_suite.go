package storagetest

import (
	"testing"

	"github.com/mdmd/mdmd/storage"
)

// consoleGroupsTests are the conformance tests of the store methods behind these
// console pages (none yet).
func consoleGroupsTests() []struct {
	name string
	fn   func(t *testing.T, s *storage.Store)
} {
	return nil
}
