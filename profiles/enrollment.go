package profiles

import (
	"errors"
	"strings"

	"github.com/mdmd/mdmd"
)

// EnrollmentIdentifier is the PayloadIdentifier of mdmd's enrollment profile.
const EnrollmentIdentifier = mdmd.AppleEnrollmentProfileID

// AccessRights grants every MDM right (8191 = all 13 bits).
const AccessRights = 8191

// SCEPKeyUsage 5 = signing (1) and encryption (4).
const SCEPKeyUsage = 5

// SCEPPayloadContent configures the device's SCEP client.
type SCEPPayloadContent struct {
	URL       string
	Name      string `plist:",omitempty"`
	Subject   [][][]string
	Challenge string
	Keysize   int
	KeyType   string `plist:"Key Type"`
	KeyUsage  int    `plist:"Key Usage"`
}

// SCEPPayload is a com.apple.security.scep payload.
type SCEPPayload struct {
	Payload
	PayloadContent SCEPPayloadContent
}

// MDMPayload is a com.apple.mdm payload.
type MDMPayload struct {
	Payload
	IdentityCertificateUUID string
	Topic                   string
	ServerURL               string
	CheckInURL              string
	SignMessage             bool
	AccessRights            int
	CheckOutWhenRemoved     bool
	ServerCapabilities      []string
}

// Enrollment describes one enrollment profile.
type Enrollment struct {
	Organization string
	// SCEPURL, ServerURL and CheckInURL are absolute URLs of this mdmd.
	SCEPURL, ServerURL, CheckInURL string
	// Challenge is the one-time SCEP challenge of this download.
	Challenge string
	// Topic is the APNs topic of the push certificate.
	Topic string
	// Subject is the common name requested in the device's certificate.
	Subject string
}

// ServerCapabilities are the optional protocol features mdmd supports.
var ServerCapabilities = []string{"com.apple.mdm.bootstraptoken"}

// BuildEnrollment returns the unsigned XML of an enrollment profile.
func BuildEnrollment(e Enrollment) ([]byte, error) {
	if e.Topic == "" {
		return nil, errors.New("no APNs topic: upload the MDM push certificate first")
	}
	if !strings.HasPrefix(e.Topic, "com.apple.mgmt.") {
		return nil, errors.New("the APNs topic must start with com.apple.mgmt.")
	}
	if e.Challenge == "" || e.SCEPURL == "" || e.ServerURL == "" {
		return nil, errors.New("challenge, SCEP URL and server URL are required")
	}
	org := e.Organization
	scepUUID := NewUUID()
	scep := SCEPPayload{
		Payload: Payload{PayloadType: "com.apple.security.scep", PayloadVersion: 1, PayloadIdentifier: EnrollmentIdentifier + ".scep",
			PayloadUUID: scepUUID, PayloadDisplayName: org + " device identity", PayloadOrganization: org},
		PayloadContent: SCEPPayloadContent{URL: e.SCEPURL, Name: org, Subject: [][][]string{{{"O", org}}, {{"CN", e.Subject}}},
			Challenge: e.Challenge, Keysize: 2048, KeyType: "RSA", KeyUsage: SCEPKeyUsage},
	}
	mdm := MDMPayload{
		Payload: Payload{PayloadType: "com.apple.mdm", PayloadVersion: 1, PayloadIdentifier: EnrollmentIdentifier + ".mdm",
			PayloadUUID: NewUUID(), PayloadDisplayName: org + " device management", PayloadOrganization: org},
		IdentityCertificateUUID: scepUUID, Topic: e.Topic, ServerURL: e.ServerURL, CheckInURL: e.CheckInURL,
		SignMessage: true, AccessRights: AccessRights, CheckOutWhenRemoved: true, ServerCapabilities: ServerCapabilities,
	}
	p := Profile{
		Payload: Payload{PayloadIdentifier: EnrollmentIdentifier, PayloadUUID: NewUUID(), PayloadDisplayName: org + " enrollment",
			PayloadDescription: "Enrolls this device in " + org + "'s device management.", PayloadOrganization: org},
		PayloadContent: []any{scep, mdm},
	}
	return p.Marshal()
}
