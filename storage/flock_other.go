//go:build !unix

package storage

// lockFile is a no-op where flock is unavailable: run one migrator at a time.
func lockFile(string) (func(), error) { return func() {}, nil }
