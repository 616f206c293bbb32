package storage

import (
	"context"
	"encoding/json"

	"gorm.io/gorm/clause"

	"github.com/mdmd/mdmd"
)

// CreateSigningKey stores k as its ring's generation k.Generation unless
// that generation exists, and returns the stored key and whether this
// call created it. Replicas that bootstrap or rotate a ring at once each
// propose the same next generation: exactly one key is kept and all of
// them get it.
func (s *Store) CreateSigningKey(ctx context.Context, k *mdmd.SigningKey) (stored *mdmd.SigningKey, created bool, err error) {
	switch {
	case k.Ring == "" || len(k.Ring) > 100:
		return nil, false, mdmd.FieldError("ring", "must be 1 to 100 characters")
	case k.Generation < 1:
		return nil, false, mdmd.FieldError("generation", "must be positive")
	case k.KID == "" || k.Alg == "" || len(k.KeySealed) == 0:
		return nil, false, mdmd.FieldError("key", "kid, alg and the sealed key are required")
	case len(k.PublicJWK) == 0 || !json.Valid(k.PublicJWK):
		return nil, false, mdmd.FieldError("public_jwk", "must be JSON")
	}
	row := *k
	row.CreatedAt = s.Now()
	row.ActiveFrom = utc(row.ActiveFrom)
	if row.ActiveFrom.IsZero() {
		row.ActiveFrom = row.CreatedAt
	}
	res := s.table(ctx, "signing_keys").Clauses(clause.OnConflict{
		Columns: []clause.Column{{Name: "ring"}, {Name: "generation"}}, DoNothing: true,
	}).Create(&row)
	if res.Error != nil {
		return nil, false, dbErr(res.Error, "signing key")
	}
	var got mdmd.SigningKey
	err = s.table(ctx, "signing_keys").Where("ring = ? AND generation = ?", k.Ring, k.Generation).Take(&got).Error
	if err != nil {
		return nil, false, dbErr(err, "signing key")
	}
	return &got, res.RowsAffected == 1, nil
}

// ListSigningKeys returns every key of a ring, oldest generation first.
func (s *Store) ListSigningKeys(ctx context.Context, ring string) ([]mdmd.SigningKey, error) {
	var out []mdmd.SigningKey
	err := s.table(ctx, "signing_keys").Where("ring = ?", ring).Order("generation").Find(&out).Error
	return out, dbErr(err, "signing keys")
}

// DeleteSigningKey removes one key of a ring (one that no token it
// signed can still be verified with). Deleting a missing key is no error.
func (s *Store) DeleteSigningKey(ctx context.Context, ring, kid string) error {
	err := s.table(ctx, "signing_keys").Where("ring = ? AND kid = ?", ring, kid).Delete(&mdmd.SigningKey{}).Error
	return dbErr(err, "signing key")
}
