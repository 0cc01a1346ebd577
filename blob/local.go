package blob

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Local is a Store over a directory. Writes go to a hidden temporary file
// in the destination folder, are fsynced, renamed over the final name and
// the folder is fsynced, so a crash at any moment leaves either the old
// file or the new one, never a torn one.
type Local struct {
	root string
}

// NewLocal uses dir (created when missing) as the store's root.
func NewLocal(dir string) (*Local, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("file:%s: cannot create the directory: %w", dir, err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("file:%s: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("file:%s: not a directory", dir)
	}
	return &Local{root: dir}, nil
}

func (l *Local) String() string { return "file:" + l.root }

func (l *Local) path(key string) string { return filepath.Join(l.root, filepath.FromSlash(key)) }

// tmpPrefix marks temporary files; a leading dot hides them from Hive-style
// readers, and a writer holding the partition lock removes leftovers.
const tmpPrefix = ".idem-tmp-"

func (l *Local) Get(_ context.Context, key string) ([]byte, error) {
	b, err := os.ReadFile(l.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	return b, err
}

func (l *Local) Put(_ context.Context, key string, data []byte) (string, error) {
	final := l.path(key)
	dir := filepath.Dir(final)
	if err := mkdirSync(dir); err != nil {
		return "", fmt.Errorf("%s: cannot create %s: %w", l, dir, err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, tmpPrefix+hex.EncodeToString(rnd[:])+"-"+filepath.Base(final))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", fmt.Errorf("%s: cannot write in %s: %w", l, dir, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("%s: write %s: %w", l, key, err)
	}
	if err := syncDir(dir); err != nil {
		return "", err
	}
	st, err := os.Stat(final)
	if err != nil {
		return "", err
	}
	return localTag(st), nil
}

// localTag stands in for an ETag: any rewrite changes the modification
// time (or the size).
func localTag(st fs.FileInfo) string {
	return strconv.FormatInt(st.Size(), 10) + "-" + strconv.FormatInt(st.ModTime().UnixNano(), 10)
}

// mkdirSync creates dir and its missing parents, fsyncing each parent so
// the new entries survive a crash.
func mkdirSync(dir string) error {
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirSync(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

func (l *Local) List(_ context.Context, prefix string) ([]Object, []string, error) {
	ents, err := os.ReadDir(l.path(prefix))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var objs []Object
	var dirs []string
	for _, e := range ents {
		if e.IsDir() {
			dirs = append(dirs, e.Name()+"/")
			continue
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		objs = append(objs, Object{Name: e.Name(), Size: info.Size(), ETag: localTag(info)})
	}
	return objs, dirs, nil
}

func (l *Local) Delete(_ context.Context, key string) error {
	err := os.Remove(l.path(key))
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Lock uses flock(2) on a lock file: the kernel releases it when the
// holder dies, even by SIGKILL, so a crashed load never blocks the next.
func (l *Local) Lock(ctx context.Context, key string, shared bool, timeout time.Duration) (Lock, error) {
	p := l.path(key)
	if err := mkdirSync(filepath.Dir(p)); err != nil {
		return nil, fmt.Errorf("%s: cannot create %s: %w", l, filepath.Dir(p), err)
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: lock file: %w", l, err)
	}
	how := syscall.LOCK_EX
	if shared {
		how = syscall.LOCK_SH
	}
	deadline := time.Now().Add(timeout)
	wait := 2 * time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return &localLock{f: f}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("flock %s: %w", p, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%s (%s, waited %v): %w", strings.TrimPrefix(key, "/"), l, timeout, ErrLockTimeout)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 50*time.Millisecond)
	}
}

type localLock struct{ f *os.File }

func (*localLock) Lost() error { return nil }

func (l *localLock) Unlock(context.Context) error {
	// Closing the descriptor releases the flock.
	return l.f.Close()
}
