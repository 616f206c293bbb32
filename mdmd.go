// Package mdmd holds the domain types shared by every part of the mdmd
// mobile device management server: devices, groups, the command queue,
// audit events, administrators, API tokens and background jobs, together
// with the typed errors that the HTTP layer maps to status codes.
//
// Subpackages implement the domain: storage persists it, web serves it,
// jobs runs background work, and the platform adapters speak to Apple and
// Google. Each consumer declares the small interface it needs.
package mdmd

import "time"

// Keypair is a named certificate and its private key. KeySealed is the
// PKCS#8 private key sealed by the secret package; it is never stored in
// the clear.
type Keypair struct {
	Name      string    `gorm:"column:name;primaryKey"`
	CertPEM   string    `gorm:"column:cert_pem"`
	KeySealed []byte    `gorm:"column:key_enc"`
	CreatedAt time.Time `gorm:"column:created_at"`
}
