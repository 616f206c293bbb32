package storage

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/migrations"
)

// CreateEnrollmentLink stores a new enrollment link.
func (s *Store) CreateEnrollmentLink(ctx context.Context, l *mdmd.EnrollmentLink) error {
	if err := l.Validate(); err != nil {
		return err
	}
	if l.ID == "" {
		l.ID = newID()
	}
	l.CreatedAt, l.ExpiresAt, l.Uses, l.RevokedAt = s.Now(), utc(l.ExpiresAt), 0, nil
	return dbErr(s.table(ctx, "enrollment_links").Create(l).Error, "enrollment link")
}

// GetEnrollmentLink returns the link with the given ID.
func (s *Store) GetEnrollmentLink(ctx context.Context, id string) (*mdmd.EnrollmentLink, error) {
	var l mdmd.EnrollmentLink
	err := s.table(ctx, "enrollment_links").Where("id = ?", id).Take(&l).Error
	return &l, dbErr(err, "enrollment link")
}

// GetEnrollmentLinkByTokenHash returns the link whose URL secret hashes to hash.
func (s *Store) GetEnrollmentLinkByTokenHash(ctx context.Context, hash string) (*mdmd.EnrollmentLink, error) {
	var l mdmd.EnrollmentLink
	err := s.table(ctx, "enrollment_links").Where("token_hash = ?", hash).Take(&l).Error
	return &l, dbErr(err, "enrollment link")
}

// ListEnrollmentLinks returns the links of a platform ("" for all), newest first.
func (s *Store) ListEnrollmentLinks(ctx context.Context, platform mdmd.Platform) ([]mdmd.EnrollmentLink, error) {
	q := s.table(ctx, "enrollment_links")
	if platform != "" {
		q = q.Where("platform = ?", string(platform))
	}
	var out []mdmd.EnrollmentLink
	err := q.Order("id DESC").Limit(mdmd.MaxPageSize).Find(&out).Error
	return out, dbErr(err, "enrollment links")
}

// RevokeEnrollmentLink revokes a link; its unused challenges die with it.
func (s *Store) RevokeEnrollmentLink(ctx context.Context, id string) (*mdmd.EnrollmentLink, error) {
	err := s.table(ctx, "enrollment_links").Where("id = ? AND revoked_at IS NULL", id).Update("revoked_at", s.Now()).Error
	if err != nil {
		return nil, dbErr(err, "enrollment link")
	}
	return s.GetEnrollmentLink(ctx, id)
}

type scepChallenge struct {
	ChallengeHash    string     `gorm:"column:challenge_hash;primaryKey"`
	EnrollmentLinkID *string    `gorm:"column:enrollment_link_id"`
	DeviceID         *string    `gorm:"column:device_id"`
	CreatedAt        time.Time  `gorm:"column:created_at"`
	ExpiresAt        time.Time  `gorm:"column:expires_at"`
	UsedAt           *time.Time `gorm:"column:used_at"`
}

// CreateSCEPChallenge stores a one-time challenge (its hash) for a link
// that is still usable.
func (s *Store) CreateSCEPChallenge(ctx context.Context, linkID, hash string, expires time.Time) error {
	return s.Tx(ctx, func(tx *Store) error {
		l, err := tx.GetEnrollmentLink(ctx, linkID)
		if err != nil {
			return err
		}
		if !l.Usable(tx.Now()) {
			return mdmd.Errorf(mdmd.EForbidden, "enrollment link is expired, revoked or used")
		}
		c := scepChallenge{ChallengeHash: hash, EnrollmentLinkID: &linkID, CreatedAt: tx.Now(), ExpiresAt: utc(expires)}
		return dbErr(tx.table(ctx, "scep_challenges").Create(&c).Error, "SCEP challenge")
	})
}

// CreateRenewalChallenge stores a one-time challenge bound to an enrolled
// device, for the enrollment profile that renews its identity.
func (s *Store) CreateRenewalChallenge(ctx context.Context, deviceID, hash string, expires time.Time) error {
	e, err := s.GetAppleEnrollment(ctx, deviceID)
	if err != nil {
		return err
	}
	if !e.TokenValid {
		return mdmd.Errorf(mdmd.EConflict, "the device is not enrolled")
	}
	c := scepChallenge{ChallengeHash: hash, DeviceID: &deviceID, CreatedAt: s.Now(), ExpiresAt: utc(expires)}
	return dbErr(s.table(ctx, "scep_challenges").Create(&c).Error, "SCEP challenge")
}

// PendingRenewal reports whether a device has an unused, unexpired renewal
// challenge (a renewal on its way).
func (s *Store) PendingRenewal(ctx context.Context, deviceID string) (bool, error) {
	var n int64
	err := s.table(ctx, "scep_challenges").Where("device_id = ? AND used_at IS NULL AND expires_at > ?", deviceID, s.Now()).Count(&n).Error
	return n > 0, dbErr(err, "SCEP challenge")
}

// ExpiringAppleIdentities returns enrolled devices whose identity
// certificate ends before the given time and that have no renewal pending.
func (s *Store) ExpiringAppleIdentities(ctx context.Context, before time.Time, limit int) ([]string, error) {
	var ids []string
	err := s.db.WithContext(ctx).Raw(`SELECT e.device_id FROM apple_enrollments e JOIN device_certs c ON c.fingerprint = e.cert_fingerprint
WHERE e.token_valid = ? AND c.not_after < ? AND NOT EXISTS (
    SELECT 1 FROM scep_challenges sc WHERE sc.device_id = e.device_id AND sc.used_at IS NULL AND sc.expires_at > ?)
ORDER BY c.not_after LIMIT ?`, true, utc(before), s.Now(), limitOf(limit)).Scan(&ids).Error
	return ids, dbErr(err, "enrollments")
}

// IssueDeviceCert uses a challenge once and records the certificate issued
// with it, in one transaction: nothing is used up unless the certificate is
// stored. The challenge must exist, be unused and unexpired. A link's
// challenge needs the link still usable (its use count goes up) and makes
// a certificate for a new enrollment; a device's challenge makes a renewal
// of that device's current identity, bound to its UDID. Failures are
// EForbidden with the reason.
func (s *Store) IssueDeviceCert(ctx context.Context, challengeHash string, cert *mdmd.DeviceCert) error {
	return s.Tx(ctx, func(tx *Store) error {
		now := tx.Now()
		var c scepChallenge
		err := tx.table(ctx, "scep_challenges").Where("challenge_hash = ?", challengeHash).Take(&c).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return mdmd.Errorf(mdmd.EForbidden, "unknown challenge")
		}
		if err != nil {
			return dbErr(err, "SCEP challenge")
		}
		switch {
		case c.UsedAt != nil:
			return mdmd.Errorf(mdmd.EForbidden, "challenge already used")
		case !now.Before(c.ExpiresAt):
			return mdmd.Errorf(mdmd.EForbidden, "challenge expired")
		}
		res := tx.table(ctx, "scep_challenges").Where("challenge_hash = ? AND used_at IS NULL", challengeHash).Update("used_at", now)
		if res.Error != nil {
			return dbErr(res.Error, "SCEP challenge")
		}
		if res.RowsAffected == 0 {
			return mdmd.Errorf(mdmd.EForbidden, "challenge already used")
		}
		if c.EnrollmentLinkID != nil {
			res = tx.table(ctx, "enrollment_links").
				Where("id = ? AND revoked_at IS NULL AND expires_at > ? AND (one_time = ? OR uses = 0)", *c.EnrollmentLinkID, now, false).
				Update("uses", gorm.Expr("uses + 1"))
			if res.Error != nil {
				return dbErr(res.Error, "enrollment link")
			}
			if res.RowsAffected == 0 {
				return mdmd.Errorf(mdmd.EForbidden, "enrollment link is expired, revoked or used")
			}
			cert.EnrollmentLinkID, cert.Renews, cert.UDID = c.EnrollmentLinkID, nil, nil
		} else {
			e, err := tx.GetAppleEnrollment(ctx, *c.DeviceID)
			if err != nil || !e.TokenValid {
				return mdmd.Errorf(mdmd.EForbidden, "the device of this renewal is no longer enrolled")
			}
			fp, udid := e.CertFingerprint, e.UDID
			cert.EnrollmentLinkID, cert.Renews, cert.UDID = nil, &fp, &udid
		}
		return tx.RecordDeviceCert(ctx, cert)
	})
}

// RecordDeviceCert stores a certificate the CA issued.
func (s *Store) RecordDeviceCert(ctx context.Context, c *mdmd.DeviceCert) error {
	c.IssuedAt, c.NotBefore, c.NotAfter = s.Now(), utc(c.NotBefore), utc(c.NotAfter)
	return dbErr(s.table(ctx, "device_certs").Create(c).Error, "device certificate")
}

// GetDeviceCert returns an issued certificate by fingerprint.
func (s *Store) GetDeviceCert(ctx context.Context, fingerprint string) (*mdmd.DeviceCert, error) {
	var c mdmd.DeviceCert
	err := s.table(ctx, "device_certs").Where("fingerprint = ?", fingerprint).Take(&c).Error
	return &c, dbErr(err, "device certificate")
}

func deviceAuthErr(format string, args ...any) error {
	return mdmd.Errorf(mdmd.EDeviceAuth, format, args...)
}

// usableCert loads an issued certificate that is valid now.
func (s *Store) usableCert(ctx context.Context, fp string) (*mdmd.DeviceCert, error) {
	c, err := s.GetDeviceCert(ctx, fp)
	if mdmd.IsCode(err, mdmd.ENotFound) {
		return nil, deviceAuthErr("the identity certificate was not issued by this server")
	}
	if err != nil {
		return nil, err
	}
	now := s.Now()
	if c.RevokedAt != nil || now.After(c.NotAfter) || now.Before(c.NotBefore) {
		return nil, deviceAuthErr("the identity certificate is revoked or expired")
	}
	return c, nil
}

// BindAppleEnrollment handles a device's Authenticate. The identity
// certificate must be one this server issued, valid, and not bound to
// another device.
//
// A new UDID becomes a new device, with ownership and owner from the
// enrollment link. For a UDID mdmd knows:
//   - a renewal of its current identity keeps the enrollment as it is;
//   - a device that left management (unenrolled, wiped) enrolls afresh;
//   - a device that is still managed may enroll again only through a link
//     for its own owner; otherwise an admin must retire it first. UDIDs are
//     not secret, so an enrollment link alone must not take over a device.
//
// Enrolling afresh revokes the old identity, clears escrowed tokens,
// cancels open commands, forgets installed profiles and posture, and
// takes ownership and owner from the new link. The push token is invalid
// until the TokenUpdate that follows.
func (s *Store) BindAppleEnrollment(ctx context.Context, a mdmd.AppleAuthenticate) (*mdmd.Device, error) {
	if a.UDID == "" || len(a.UDID) > 100 {
		return nil, mdmd.FieldError("UDID", "required, at most 100 characters")
	}
	var dev *mdmd.Device
	err := s.Tx(ctx, func(tx *Store) error {
		cert, err := tx.usableCert(ctx, a.CertFingerprint)
		if err != nil {
			return err
		}
		if cert.UDID != nil && *cert.UDID != a.UDID {
			return deviceAuthErr("the identity certificate belongs to another device")
		}
		now := tx.Now()
		var link *mdmd.EnrollmentLink
		if cert.EnrollmentLinkID != nil {
			if link, err = tx.GetEnrollmentLink(ctx, *cert.EnrollmentLinkID); err != nil {
				return err
			}
		}
		var enr mdmd.AppleEnrollment
		err = tx.table(ctx, "apple_enrollments").Where("udid = ?", a.UDID).Take(&enr).Error
		hasEnrollment := err == nil
		if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
			return dbErr(err, "enrollment")
		}
		d, err := tx.GetDeviceByUDID(ctx, a.UDID)
		known := err == nil
		if err != nil && !mdmd.IsCode(err, mdmd.ENotFound) {
			return err
		}
		renewal := hasEnrollment && cert.Renews != nil && *cert.Renews == enr.CertFingerprint
		fresh := !hasEnrollment || (enr.CertFingerprint != a.CertFingerprint && !renewal)
		if fresh && link == nil {
			return deviceAuthErr("the identity certificate was not issued for an enrollment")
		}
		if fresh && known && (d.EnrollmentState == mdmd.EnrollmentEnrolled || d.EnrollmentState == mdmd.EnrollmentPending) &&
			(link.OwnerUser == "" || link.OwnerUser != d.OwnerUser) {
			return deviceAuthErr("device %s is already managed; an admin must retire it before it can enroll with another owner's link", a.UDID)
		}
		if hasEnrollment && enr.CertFingerprint != a.CertFingerprint {
			if err := tx.table(ctx, "device_certs").Where("fingerprint = ? AND revoked_at IS NULL", enr.CertFingerprint).
				Update("revoked_at", now).Error; err != nil {
				return dbErr(err, "device certificate")
			}
		}
		res := tx.table(ctx, "device_certs").Where("fingerprint = ? AND (udid IS NULL OR udid = ?)", a.CertFingerprint, a.UDID).
			Update("udid", a.UDID)
		if res.Error != nil {
			return dbErr(res.Error, "device certificate")
		}
		if res.RowsAffected == 0 {
			return deviceAuthErr("the identity certificate belongs to another device")
		}

		if !known {
			udid := a.UDID
			d = &mdmd.Device{Platform: mdmd.PlatformIOS, UDID: &udid, Name: a.DeviceName, SerialNumber: a.SerialNumber,
				Model: firstNonEmpty(a.ProductName, a.Model), OSVersion: a.OSVersion, Ownership: link.Ownership,
				EnrollmentState: mdmd.EnrollmentPending, OwnerUser: link.OwnerUser, LastSeenAt: &now}
			if err := tx.CreateDevice(ctx, d); err != nil {
				return err
			}
		} else {
			set := map[string]any{"updated_at": now, "last_seen_at": now}
			for col, v := range map[string]string{"serial_number": a.SerialNumber, "model": firstNonEmpty(a.ProductName, a.Model),
				"os_version": a.OSVersion, "name": a.DeviceName} {
				if v != "" {
					set[col] = v
				}
			}
			if fresh {
				set["enrollment_state"], set["ownership"], set["owner_user"] = string(mdmd.EnrollmentPending), string(link.Ownership), link.OwnerUser
				if err := tx.forgetManagedState(ctx, d.ID, now); err != nil {
					return err
				}
			}
			if err := tx.table(ctx, "devices").Where("id = ?", d.ID).Updates(set).Error; err != nil {
				return dbErr(err, "device")
			}
			if d, err = tx.GetDevice(ctx, d.ID); err != nil {
				return err
			}
		}
		linkID := cert.EnrollmentLinkID
		if renewal {
			linkID = enr.EnrollmentLinkID
		}
		row := mdmd.AppleEnrollment{DeviceID: d.ID, UDID: a.UDID, CertFingerprint: a.CertFingerprint,
			EnrollmentLinkID: linkID, TokenValid: false, LastCheckinAt: &now, CreatedAt: now, UpdatedAt: now}
		cols := []string{"cert_fingerprint", "enrollment_link_id", "token_valid", "last_checkin_at", "updated_at"}
		if renewal {
			// The same enrollment with a new identity: the token stays valid.
			row.TokenValid = enr.TokenValid
		}
		err = tx.table(ctx, "apple_enrollments").Clauses(clause.OnConflict{
			Columns:   []clause.Column{{Name: "device_id"}},
			DoUpdates: clause.AssignmentColumns(append(cols, "unlock_token_sealed", "bootstrap_sealed")),
		}).Create(&row).Error
		if err != nil {
			return dbErr(err, "enrollment")
		}
		if renewal {
			// Keep the escrowed tokens of the same enrollment.
			err = tx.table(ctx, "apple_enrollments").Where("device_id = ?", d.ID).
				Updates(map[string]any{"unlock_token_sealed": enr.UnlockTokenSealed, "bootstrap_sealed": enr.BootstrapSealed}).Error
			if err != nil {
				return dbErr(err, "enrollment")
			}
		}
		dev = d
		return nil
	})
	return dev, err
}

// forgetManagedState clears what belonged to a device's previous
// enrollment: escrowed tokens, open commands, the profiles mdmd installed
// and the posture it reported.
func (s *Store) forgetManagedState(ctx context.Context, deviceID string, now time.Time) error {
	if err := s.table(ctx, "apple_enrollments").Where("device_id = ?", deviceID).
		Updates(map[string]any{"unlock_token_sealed": nil, "bootstrap_sealed": nil, "token_valid": false, "updated_at": now}).Error; err != nil {
		return dbErr(err, "enrollment")
	}
	if err := s.table(ctx, "commands").Where("device_id = ? AND status IN ?", deviceID, activeStatuses).
		Updates(map[string]any{"status": string(mdmd.CommandCanceled), "updated_at": now, "completed_at": now,
			"error": "device left management"}).Error; err != nil {
		return dbErr(err, "commands")
	}
	if err := s.table(ctx, "device_profiles").Where("device_id = ?", deviceID).Delete(&mdmd.DeviceProfile{}).Error; err != nil {
		return dbErr(err, "device profiles")
	}
	return dbErr(s.table(ctx, "device_postures").Where("device_id = ?", deviceID).Delete(&mdmd.Posture{}).Error, "posture")
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

// ResolveAppleIdentity returns the enrollment a certificate authenticates.
// A renewed certificate (issued by SCEP renewal for a bound one) takes
// over its predecessor's enrollment on first use, and the old one is
// revoked. A certificate of no enrollment is EDeviceAuth.
func (s *Store) ResolveAppleIdentity(ctx context.Context, fingerprint string) (*mdmd.AppleEnrollment, error) {
	// The common case, every check-in: one query for the enrollment and the
	// state of its certificate.
	var row struct {
		mdmd.AppleEnrollment
		CertRevokedAt *time.Time `gorm:"column:cert_revoked_at"`
		CertNotBefore time.Time  `gorm:"column:cert_not_before"`
		CertNotAfter  time.Time  `gorm:"column:cert_not_after"`
	}
	err := s.db.WithContext(ctx).Raw(`SELECT e.*, c.revoked_at AS cert_revoked_at, c.not_before AS cert_not_before, c.not_after AS cert_not_after
FROM apple_enrollments e JOIN device_certs c ON c.fingerprint = e.cert_fingerprint WHERE e.cert_fingerprint = ?`, fingerprint).Take(&row).Error
	if err == nil {
		now := s.Now()
		if row.CertRevokedAt != nil || now.After(row.CertNotAfter) || now.Before(row.CertNotBefore) {
			return nil, deviceAuthErr("the identity certificate is revoked or expired")
		}
		return &row.AppleEnrollment, nil
	}
	if !errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, dbErr(err, "enrollment")
	}
	var out *mdmd.AppleEnrollment
	err = s.Tx(ctx, func(tx *Store) error {
		cert, err := tx.usableCert(ctx, fingerprint)
		if err != nil {
			return err
		}
		if cert.Renews == nil || cert.UDID == nil {
			return deviceAuthErr("the identity certificate is not enrolled; send Authenticate first")
		}
		now := tx.Now()
		res := tx.table(ctx, "apple_enrollments").Where("cert_fingerprint = ? AND udid = ?", *cert.Renews, *cert.UDID).
			Updates(map[string]any{"cert_fingerprint": fingerprint, "updated_at": now})
		if res.Error != nil {
			return dbErr(res.Error, "enrollment")
		}
		if res.RowsAffected == 0 {
			return deviceAuthErr("the certificate this one renews is no longer enrolled")
		}
		if err := tx.table(ctx, "device_certs").Where("fingerprint = ?", *cert.Renews).Update("revoked_at", now).Error; err != nil {
			return dbErr(err, "device certificate")
		}
		var e mdmd.AppleEnrollment
		if err := tx.table(ctx, "apple_enrollments").Where("cert_fingerprint = ?", fingerprint).Take(&e).Error; err != nil {
			return dbErr(err, "enrollment")
		}
		out = &e
		return nil
	})
	return out, err
}

// RenewalTarget checks that a certificate may sign a SCEP renewal (it is
// issued, valid and bound to a device) and returns its UDID.
func (s *Store) RenewalTarget(ctx context.Context, fingerprint string) (string, error) {
	c, err := s.usableCert(ctx, fingerprint)
	if err != nil {
		return "", err
	}
	if c.UDID == nil {
		return "", deviceAuthErr("only an enrolled identity may renew")
	}
	return *c.UDID, nil
}

// GetAppleEnrollment returns the Apple enrollment of a device.
func (s *Store) GetAppleEnrollment(ctx context.Context, deviceID string) (*mdmd.AppleEnrollment, error) {
	var e mdmd.AppleEnrollment
	err := s.table(ctx, "apple_enrollments").Where("device_id = ?", deviceID).Take(&e).Error
	return &e, dbErr(err, "enrollment")
}

// UpdateAppleToken handles TokenUpdate: it stores where to push the device
// and marks it enrolled.
func (s *Store) UpdateAppleToken(ctx context.Context, deviceID string, u mdmd.AppleTokenUpdate) error {
	return s.Tx(ctx, func(tx *Store) error {
		now := tx.Now()
		set := map[string]any{"topic": u.Topic, "push_token": u.PushToken, "push_magic": u.PushMagic,
			"token_valid": true, "last_checkin_at": now, "updated_at": now}
		if u.UnlockTokenSealed != nil {
			set["unlock_token_sealed"] = u.UnlockTokenSealed
		}
		res := tx.table(ctx, "apple_enrollments").Where("device_id = ?", deviceID).Updates(set)
		if res.Error != nil {
			return dbErr(res.Error, "enrollment")
		}
		if res.RowsAffected == 0 {
			return mdmd.Errorf(mdmd.ENotFound, "enrollment not found")
		}
		dset := map[string]any{"enrollment_state": string(mdmd.EnrollmentEnrolled), "updated_at": now, "last_seen_at": now}
		if err := tx.table(ctx, "devices").Where("id = ? AND enrolled_at IS NULL", deviceID).Update("enrolled_at", now).Error; err != nil {
			return dbErr(err, "device")
		}
		if err := tx.markDirty(ctx, deviceID); err != nil {
			return err
		}
		return dbErr(tx.table(ctx, "devices").Where("id = ?", deviceID).Updates(dset).Error, "device")
	})
}

// EndAppleEnrollment records that a device left management (CheckOut, a
// completed wipe, or an admin retiring a device that is gone): its
// identity is revoked, escrowed tokens cleared, open commands canceled,
// installed profiles and posture forgotten, and the device put in state.
func (s *Store) EndAppleEnrollment(ctx context.Context, deviceID string, state mdmd.EnrollmentState) error {
	return s.Tx(ctx, func(tx *Store) error {
		now := tx.Now()
		e, err := tx.GetAppleEnrollment(ctx, deviceID)
		if err != nil {
			return err
		}
		if err := tx.table(ctx, "device_certs").Where("fingerprint = ? AND revoked_at IS NULL", e.CertFingerprint).
			Update("revoked_at", now).Error; err != nil {
			return dbErr(err, "device certificate")
		}
		if err := tx.forgetManagedState(ctx, deviceID, now); err != nil {
			return err
		}
		if err := tx.markDirty(ctx, deviceID); err != nil {
			return err
		}
		return dbErr(tx.table(ctx, "devices").Where("id = ?", deviceID).
			Updates(map[string]any{"enrollment_state": string(state), "updated_at": now}).Error, "device")
	})
}

// SetAppleBootstrapToken stores a device's sealed bootstrap token.
func (s *Store) SetAppleBootstrapToken(ctx context.Context, deviceID string, sealed []byte) error {
	res := s.table(ctx, "apple_enrollments").Where("device_id = ?", deviceID).
		Updates(map[string]any{"bootstrap_sealed": sealed, "updated_at": s.Now()})
	if res.RowsAffected == 0 && res.Error == nil {
		return mdmd.Errorf(mdmd.ENotFound, "enrollment not found")
	}
	return dbErr(res.Error, "enrollment")
}

// ApplePushTargets returns the enrollments among deviceIDs that can be
// pushed (a valid token).
func (s *Store) ApplePushTargets(ctx context.Context, deviceIDs []string) ([]mdmd.AppleEnrollment, error) {
	var out []mdmd.AppleEnrollment
	if len(deviceIDs) == 0 {
		return out, nil
	}
	err := s.table(ctx, "apple_enrollments").Where("device_id IN ? AND token_valid = ?", deviceIDs, true).Find(&out).Error
	return out, dbErr(err, "enrollments")
}

// RecordPushes stores push outcomes; a push APNs answered as unregistered
// invalidates that device's token.
func (s *Store) RecordPushes(ctx context.Context, recs []mdmd.PushRecord) error {
	if len(recs) == 0 {
		return nil
	}
	return s.Tx(ctx, func(tx *Store) error {
		for i := range recs {
			if recs[i].ID == "" {
				recs[i].ID = newID()
			}
			recs[i].At = utc(recs[i].At)
		}
		if err := tx.table(ctx, "push_log").CreateInBatches(recs, 500).Error; err != nil {
			return dbErr(err, "push log")
		}
		byResult := map[string][]string{}
		var at time.Time
		for _, r := range recs {
			byResult[r.Result] = append(byResult[r.Result], r.DeviceID)
			if r.At.After(at) {
				at = r.At
			}
		}
		for _, r := range recs {
			if r.Result != mdmd.PushUnregistered {
				continue
			}
			// Only the token APNs refused: the device may have sent a new
			// one since (TokenUpdate) that must stay valid.
			q := tx.table(ctx, "apple_enrollments").Where("device_id = ?", r.DeviceID)
			if r.Token != "" {
				q = q.Where("push_token = ?", r.Token)
			}
			if err := q.Update("token_valid", false).Error; err != nil {
				return dbErr(err, "enrollment")
			}
		}
		for result, ids := range byResult {
			set := map[string]any{"last_push_at": at, "last_push_result": result}
			for lo := 0; lo < len(ids); lo += 500 {
				if err := tx.table(ctx, "apple_enrollments").Where("device_id IN ?", ids[lo:min(lo+500, len(ids))]).
					Updates(set).Error; err != nil {
					return dbErr(err, "enrollments")
				}
			}
		}
		return nil
	})
}

// ListPushes returns a device's latest push outcomes, newest first.
func (s *Store) ListPushes(ctx context.Context, deviceID string, limit int) ([]mdmd.PushRecord, error) {
	var out []mdmd.PushRecord
	err := s.table(ctx, "push_log").Where("device_id = ?", deviceID).Order("at DESC, id DESC").Limit(limitOf(limit)).Find(&out).Error
	return out, dbErr(err, "push log")
}

// UpsertPosture merges reported posture into the device's record in one
// statement: values that are set replace stored ones, unset ones are
// kept, and the details object is merged key by key. A reported OS
// version also updates the device.
func (s *Store) UpsertPosture(ctx context.Context, p *mdmd.Posture) error {
	return s.Tx(ctx, func(tx *Store) error { return tx.upsertPosture(ctx, p, true) })
}

// upsertPosture runs its statements on s: call it in a transaction. It
// marks the device for compliance evaluation.

func (s *Store) upsertPosture(ctx context.Context, p *mdmd.Posture, updateDevice bool) error {
	now := s.Now()
	observed := utc(p.ObservedAt)
	if p.ObservedAt.IsZero() {
		observed = now
	}
	str := func(v string) any {
		if v == "" {
			return nil
		}
		return v
	}
	var details any
	if len(p.Details) > 0 {
		if !json.Valid(p.Details) {
			return mdmd.FieldError("details", "not JSON")
		}
		details = string(p.Details)
	}
	mergeDetails := "json_patch(COALESCE(device_postures.details, '{}'), excluded.details)"
	if s.dialect == migrations.Postgres {
		mergeDetails = "(COALESCE(device_postures.details, '{}')::jsonb || excluded.details::jsonb)::text"
	}
	keep := func(col string) string { return col + " = COALESCE(excluded." + col + ", device_postures." + col + ")" }
	sql := `INSERT INTO device_postures (device_id, os_version, build_version, security_patch, passcode_present, passcode_compliant,
    encrypted, supervised, activation_lock, compromised, details, observed_at, updated_at)
VALUES (?, COALESCE(?, ''), COALESCE(?, ''), COALESCE(?, ''), ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (device_id) DO UPDATE SET
    os_version = CASE WHEN excluded.os_version = '' THEN device_postures.os_version ELSE excluded.os_version END,
    build_version = CASE WHEN excluded.build_version = '' THEN device_postures.build_version ELSE excluded.build_version END,
    security_patch = CASE WHEN excluded.security_patch = '' THEN device_postures.security_patch ELSE excluded.security_patch END,
    ` + strings.Join([]string{keep("passcode_present"), keep("passcode_compliant"), keep("encrypted"), keep("supervised"),
		keep("activation_lock"), keep("compromised")}, ",\n    ") + `,
    details = CASE WHEN excluded.details IS NULL THEN device_postures.details ELSE ` + mergeDetails + ` END,
    observed_at = excluded.observed_at, updated_at = excluded.updated_at`
	err := s.db.WithContext(ctx).Exec(sql, p.DeviceID, str(p.OSVersion), str(p.BuildVersion), str(p.SecurityPatch),
		p.PasscodePresent, p.PasscodeCompliant, p.Encrypted, p.Supervised, p.ActivationLock, p.Compromised,
		details, observed, now).Error
	if err != nil {
		return dbErr(err, "posture")
	}
	if err := s.markDirty(ctx, p.DeviceID); err != nil {
		return err
	}
	if p.OSVersion == "" || !updateDevice {
		return nil
	}
	return dbErr(s.table(ctx, "devices").Where("id = ?", p.DeviceID).
		Updates(map[string]any{"os_version": p.OSVersion, "updated_at": now}).Error, "device")
}

// GetPosture returns a device's posture.
func (s *Store) GetPosture(ctx context.Context, deviceID string) (*mdmd.Posture, error) {
	var p mdmd.Posture
	err := s.table(ctx, "device_postures").Where("device_id = ?", deviceID).Take(&p).Error
	return &p, dbErr(err, "posture")
}
