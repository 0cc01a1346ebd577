package blob

import (
	"context"
	"errors"
	"time"
)

// Store is the little an object store must offer for idem's partition
// writes: whole-object reads and writes (each write atomic for readers:
// they see the old object or the new one), a one-level listing, deletes and
// an exclusive lock. The local filesystem and S3 implement it; the
// partition logic in this package is written once against it.
type Store interface {
	// Get returns the whole object, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Put writes the whole object atomically and returns its ETag (S3) or
	// an equivalent version tag (local: size and modification time).
	Put(ctx context.Context, key string, data []byte) (etag string, err error)
	// List returns the objects directly under prefix (a "folder" ending in
	// "/", or "" for the root) and the names of its sub-folders (with the
	// trailing "/"), both relative to prefix.
	List(ctx context.Context, prefix string) (objs []Object, dirs []string, err error)
	// Delete removes an object; a missing one is not an error.
	Delete(ctx context.Context, key string) error
	// Lock takes the lock named key, waiting at most timeout (then an
	// error wrapping ErrLockTimeout). A shared lock excludes only
	// exclusive holders; stores that cannot share treat it as exclusive.
	Lock(ctx context.Context, key string, shared bool, timeout time.Duration) (Lock, error)
	// String names the store for messages (no secrets).
	String() string
}

// Lock is a held lock.
type Lock interface {
	// Lost reports an error when the lock can no longer be trusted (an S3
	// lease that could not be renewed): the holder must not commit.
	Lost() error
	Unlock(ctx context.Context) error
}

// Object is one listed object.
type Object struct {
	Name string // relative to the listed prefix
	Size int64
	ETag string // changes whenever the object is rewritten
}

var (
	// ErrNotFound is a missing object.
	ErrNotFound = errors.New("object not found")
	// ErrLockTimeout means another writer held the lock for the whole wait.
	ErrLockTimeout = errors.New("lock timeout: another load of this table or partition is still running")
)
