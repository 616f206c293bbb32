// Package profiles builds Apple configuration profiles (.mobileconfig):
// the enrollment profile that carries mdmd's SCEP and MDM payloads, and
// the policy profiles mdmd installs on devices.
package profiles

import (
	"crypto/rand"
	"fmt"
	"strings"

	"github.com/micromdm/plist"
)

// Payload is the common header of every payload in a profile.
type Payload struct {
	PayloadType         string
	PayloadVersion      int
	PayloadIdentifier   string
	PayloadUUID         string
	PayloadDisplayName  string `plist:",omitempty"`
	PayloadDescription  string `plist:",omitempty"`
	PayloadOrganization string `plist:",omitempty"`
}

// Profile is a top-level Configuration profile.
type Profile struct {
	Payload
	PayloadContent           []any
	PayloadRemovalDisallowed bool   `plist:",omitempty"`
	PayloadScope             string `plist:",omitempty"`
}

// Marshal returns the profile as an XML plist.
func (p *Profile) Marshal() ([]byte, error) {
	p.PayloadType, p.PayloadVersion = "Configuration", 1
	return plist.MarshalIndent(p, "  ")
}

// NewUUID returns a random RFC 4122 UUID in upper case, as Apple writes them.
func NewUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// newProfileID returns an ID for a new profile (also the suffix of typed
// profiles' identifiers).
func newProfileID() string { return strings.ToLower(NewUUID()) }
