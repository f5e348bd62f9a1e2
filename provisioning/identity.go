package provisioning

import (
	"context"
	"errors"
)

// EnsureIdentity returns the committed identity, provisioning the device first when it has
// none. fresh reports whether provisioning ran now. opts is called only to provision: a
// provisioned device needs no claim certificate (a factory may remove it).
func EnsureIdentity(ctx context.Context, store *Store, opts func() (FleetOptions, error)) (id *Identity, fresh bool, err error) {
	id, err = store.Load()
	switch {
	case err == nil:
		return id, false, nil
	case !errors.Is(err, ErrNoIdentity):
		return nil, false, err
	}
	o, err := opts()
	if err != nil {
		return nil, false, err
	}
	id, err = Provision(ctx, store, o)
	if err != nil {
		return nil, false, err
	}
	return id, true, nil
}
