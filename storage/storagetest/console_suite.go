package storagetest

import (
	"testing"

	"github.com/mdmd/mdmd/storage"
)

func consoleTests() []struct {
	name string
	fn   func(t *testing.T, s *storage.Store)
} {
	return nil
}
