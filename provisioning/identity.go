package provisioning

import (
	"context"
	"errors"
)

// EnsureIdentity returns the committed identity, provisioning the device first when it has
// none. fresh reports whether provisioning ran now.
func EnsureIdentity(ctx context.Context, store *Store, opts FleetOptions) (id *Identity, fresh bool, err error) {
	id, err = store.Load()
	switch {
	case err == nil:
		return id, false, nil
	case !errors.Is(err, ErrNoIdentity):
		return nil, false, err
	}
	id, err = Provision(ctx, store, opts)
	if err != nil {
		return nil, false, err
	}
	return id, true, nil
}
