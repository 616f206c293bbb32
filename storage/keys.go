package storage

import (
	"context"
	"errors"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/mdmd/mdmd"
)

// CreateKeypairIfAbsent stores kp unless a key pair of that name exists,
// and returns the one that is stored. Replicas starting at once may both
// generate a key pair; exactly one is kept and both use it.
func (s *Store) CreateKeypairIfAbsent(ctx context.Context, kp *mdmd.Keypair) (stored *mdmd.Keypair, created bool, err error) {
	if kp.Name == "" || kp.CertPEM == "" || len(kp.KeySealed) == 0 {
		return nil, false, mdmd.FieldError("keypair", "name, certificate and sealed key are required")
	}
	kp.CreatedAt = s.Now()
	res := s.table(ctx, "keypairs").Clauses(clause.OnConflict{DoNothing: true}).Create(kp)
	if res.Error != nil {
		return nil, false, dbErr(res.Error, "keypair")
	}
	stored, err = s.GetKeypair(ctx, kp.Name)
	return stored, res.RowsAffected == 1, err
}

// GetKeypair returns the named key pair.
func (s *Store) GetKeypair(ctx context.Context, name string) (*mdmd.Keypair, error) {
	var kp mdmd.Keypair
	err := s.table(ctx, "keypairs").Where("name = ?", name).Take(&kp).Error
	return &kp, dbErr(err, "keypair")
}

type setting struct {
	Key       string    `gorm:"column:key;primaryKey"`
	Value     string    `gorm:"column:value"`
	UpdatedAt time.Time `gorm:"column:updated_at"`
}

// GetSetting returns the value of a server setting.
func (s *Store) GetSetting(ctx context.Context, key string) (string, error) {
	var st setting
	err := s.table(ctx, "settings").Where("key = ?", key).Take(&st).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return "", mdmd.Errorf(mdmd.ENotFound, "setting %q not found", key)
	}
	return st.Value, dbErr(err, "setting")
}

// PutSetting stores a server setting, replacing any earlier value.
func (s *Store) PutSetting(ctx context.Context, key, value string) error {
	st := setting{Key: key, Value: value, UpdatedAt: s.Now()}
	err := s.table(ctx, "settings").Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "key"}},
		DoUpdates: clause.AssignmentColumns([]string{"value", "updated_at"}),
	}).Create(&st).Error
	return dbErr(err, "setting")
}

// CreateSettingIfAbsent stores value unless the key is set, and returns the
// stored value and whether this call created it. Exactly one of several
// concurrent callers creates it.
func (s *Store) CreateSettingIfAbsent(ctx context.Context, key, value string) (stored string, created bool, err error) {
	st := setting{Key: key, Value: value, UpdatedAt: s.Now()}
	res := s.table(ctx, "settings").Clauses(clause.OnConflict{DoNothing: true}).Create(&st)
	if res.Error != nil {
		return "", false, dbErr(res.Error, "setting")
	}
	stored, err = s.GetSetting(ctx, key)
	return stored, res.RowsAffected == 1, err
}

// PutKeypair stores a key pair, replacing one of the same name.
func (s *Store) PutKeypair(ctx context.Context, kp *mdmd.Keypair) error {
	if kp.Name == "" || kp.CertPEM == "" || len(kp.KeySealed) == 0 {
		return mdmd.FieldError("keypair", "name, certificate and sealed key are required")
	}
	kp.CreatedAt = s.Now()
	err := s.table(ctx, "keypairs").Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "name"}},
		DoUpdates: clause.AssignmentColumns([]string{"cert_pem", "key_enc", "created_at"}),
	}).Create(kp).Error
	return dbErr(err, "keypair")
}
