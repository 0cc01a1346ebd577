package blob

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// S3 is a Store on any S3-compatible service (aws-sdk-go-v2). Single PUTs
// are atomic per object; there is no rename and no multi-object
// transaction, which is why this package commits through a manifest.
type S3 struct {
	client *s3.Client
	bucket string
	prefix string // "" or ending in "/"
	lease  time.Duration
	label  string
}

// S3Options configure NewS3.
type S3Options struct {
	Bucket, Prefix   string
	Endpoint, Region string
	// Lease is how long a lock stays valid without renewal: a holder that
	// dies blocks others at most this long.
	Lease time.Duration
}

// NewS3 connects with credentials from the standard AWS environment
// variables (or shared config).
func NewS3(ctx context.Context, o S3Options) (*S3, error) {
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.Lease <= 0 {
		o.Lease = 30 * time.Second
	}
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(o.Region),
		// Not on EC2: the instance-metadata probe would only add seconds
		// of timeouts before a missing-credentials error.
		config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	if err != nil {
		return nil, fmt.Errorf("s3 config: %w", err)
	}
	client := s3.NewFromConfig(cfg, func(op *s3.Options) {
		if o.Endpoint != "" {
			op.BaseEndpoint = aws.String(o.Endpoint)
			op.UsePathStyle = true
		}
		// Plain PUTs with Content-MD5-free bodies: S3-compatible servers
		// differ in the newer checksum headers, and ETags suffice here.
		op.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		op.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	prefix := strings.Trim(o.Prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	// No probe of the bucket here: it would cost every run a round trip,
	// and every call's error already says "bucket does not exist" or
	// "access denied" (wrap).
	return &S3{client: client, bucket: o.Bucket, prefix: prefix, lease: o.Lease, label: "s3://" + o.Bucket + "/" + prefix}, nil
}

func (s *S3) String() string { return s.label }

// wrap turns service errors into messages that say what to fix. They never
// contain the secret key: the SDK does not put it in errors.
func (s *S3) wrap(key string, err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchBucket":
			return fmt.Errorf("%s: bucket %q does not exist: %w", s, s.bucket, err)
		case "NoSuchKey", "NotFound":
			if key == "bucket" {
				return fmt.Errorf("%s: bucket %q does not exist (or is not visible with these credentials): %w", s, s.bucket, err)
			}
			return fmt.Errorf("%s%s: %w", s, key, ErrNotFound)
		case "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden", "InvalidToken", "ExpiredToken":
			return fmt.Errorf("%s: access denied (%s): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY", s, ae.ErrorCode())
		}
	}
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusNotFound:
			if key == "bucket" {
				return fmt.Errorf("%s: bucket %q does not exist", s, s.bucket)
			}
			return fmt.Errorf("%s%s: %w", s, key, ErrNotFound)
		case http.StatusForbidden:
			return fmt.Errorf("%s: access denied: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY", s)
		}
	}
	return fmt.Errorf("%s%s: %w", s, key, err)
}

func isCode(err error, codes ...string) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		for _, c := range codes {
			if ae.ErrorCode() == c {
				return true
			}
		}
	}
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		for _, c := range codes {
			if c == "412" && re.HTTPStatusCode() == http.StatusPreconditionFailed {
				return true
			}
			if c == "404" && re.HTTPStatusCode() == http.StatusNotFound {
				return true
			}
		}
	}
	return false
}

func (s *S3) Get(ctx context.Context, key string) ([]byte, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + key)})
	if err != nil {
		return nil, s.wrap(key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, fmt.Errorf("%s%s: read: %w", s, key, err)
	}
	return b, nil
}

func (s *S3) getTagged(ctx context.Context, key string) ([]byte, string, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + key)})
	if err != nil {
		return nil, "", s.wrap(key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	return b, aws.ToString(out.ETag), err
}

func (s *S3) Put(ctx context.Context, key string, data []byte) (string, error) {
	return s.put(ctx, key, data, nil, nil)
}

func (s *S3) put(ctx context.Context, key string, data []byte, ifMatch, ifNoneMatch *string) (string, error) {
	out, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + key),
		Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))),
		IfMatch: ifMatch, IfNoneMatch: ifNoneMatch,
	})
	if err != nil {
		if isCode(err, "PreconditionFailed", "412", "ConditionalRequestConflict") {
			return "", errPrecondition
		}
		return "", s.wrap(key, err)
	}
	return normTag(aws.ToString(out.ETag)), nil
}

var errPrecondition = errors.New("precondition failed")

func normTag(t string) string { return strings.Trim(t, `"`) }

func (s *S3) List(ctx context.Context, prefix string) ([]Object, []string, error) {
	var objs []Object
	var dirs []string
	full := s.prefix + prefix
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket), Prefix: aws.String(full), Delimiter: aws.String("/"),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, nil, s.wrap(prefix, err)
		}
		for _, o := range page.Contents {
			name := strings.TrimPrefix(aws.ToString(o.Key), full)
			if name == "" {
				continue
			}
			objs = append(objs, Object{Name: name, Size: aws.ToInt64(o.Size), ETag: normTag(aws.ToString(o.ETag))})
		}
		for _, c := range page.CommonPrefixes {
			dirs = append(dirs, strings.TrimPrefix(aws.ToString(c.Prefix), full))
		}
	}
	return objs, dirs, nil
}

func (s *S3) Delete(ctx context.Context, key string) error {
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + key)})
	if err != nil && !isCode(err, "NoSuchKey", "404") {
		return s.wrap(key, err)
	}
	return nil
}

// lockBody is the lock object's content: who holds it and until when.
type lockBody struct {
	Owner   string `json:"owner"`
	Expires int64  `json:"expires_unix_ms"`
	// Host identifies the holder's machine and PID namespace, so a waiter
	// on the same one can see at once that the holder process is gone
	// (killed, crashed) instead of waiting out the lease.
	Host string `json:"host,omitempty"`
	PID  int    `json:"pid,omitempty"`
}

// hostID is this machine's boot and PID namespace, or "" where they cannot
// be told (then only the lease frees a dead holder's lock). A PID is only
// meaningful inside its namespace and boot, hence both. Read on first use:
// most runs (reruns, file: targets) never take an S3 lock.
var hostID = sync.OnceValue(func() string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(boot)) + "/" + ns
})

// holderGone reports whether the lock's holder was a process of this
// machine and PID namespace that no longer exists.
func holderGone(lb *lockBody) bool {
	if id := hostID(); id == "" || lb.Host != id || lb.PID <= 0 || lb.PID == os.Getpid() {
		return false
	}
	return errors.Is(syscall.Kill(lb.PID, 0), syscall.ESRCH)
}

// Lock creates the lock object with a conditional PUT (If-None-Match: *),
// which S3 and versitygw evaluate atomically: exactly one creator wins.
// The holder renews its lease (a PUT with If-Match on its own ETag) every
// third of the lease; a lock whose lease ran out (its holder died) is taken
// over with If-Match on the stale ETag, so two waiters cannot both take it.
// Shared locks are not available on S3, so they are exclusive here.
//
// A waiter on the holder's own machine (same boot and PID namespace) also
// takes over at once when the holder process no longer exists.
//
// The lease is wall-clock time: machines whose clocks differ by more than
// a fraction of the lease can overlap. A holder that cannot renew stops
// before committing (Lost).
func (s *S3) Lock(ctx context.Context, key string, _ bool, timeout time.Duration) (Lock, error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	owner := hex.EncodeToString(rnd[:])
	body := func() []byte {
		b, _ := json.Marshal(lockBody{Owner: owner, Expires: time.Now().Add(s.lease).UnixMilli(), Host: hostID(), PID: os.Getpid()})
		return b
	}
	deadline := time.Now().Add(timeout)
	wait := 10 * time.Millisecond
	for {
		tag, err := s.put(ctx, key, body(), nil, aws.String("*"))
		if err == nil {
			return s.hold(key, owner, tag, body), nil
		}
		if err != errPrecondition {
			return nil, err
		}
		cur, curTag, gerr := s.getTagged(ctx, key)
		if gerr == nil {
			var lb lockBody
			if json.Unmarshal(cur, &lb) != nil || time.Now().UnixMilli() > lb.Expires || holderGone(&lb) {
				// The holder's lease ran out or its process is gone: take
				// over, but only this exact stale version.
				tag, won, err := s.takeOver(ctx, key, curTag, body())
				if err != nil {
					return nil, err
				}
				if won {
					return s.hold(key, owner, tag, body), nil
				}
			}
		} else if !errors.Is(gerr, ErrNotFound) {
			return nil, gerr
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s%s (waited %v): %w", s, key, timeout, ErrLockTimeout)
		}
		j, _ := rand.Int(rand.Reader, big.NewInt(int64(wait)))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait/2 + time.Duration(j.Int64())/2):
		}
		wait = min(wait*2, 200*time.Millisecond)
	}
}

// takeOver replaces the stale lock object version curTag with data. It
// is not won when another waiter replaced that version first, or when the
// holder deleted the object meanwhile: S3 answers a PUT with If-Match on a
// missing object with 404, not 412, and that too is a race lost, to be
// retried, not an error (it failed concurrent loads with "object not found").
func (s *S3) takeOver(ctx context.Context, key, curTag string, data []byte) (tag string, won bool, err error) {
	tag, err = s.put(ctx, key, data, aws.String(curTag), nil)
	switch {
	case err == nil:
		return tag, true, nil
	case err == errPrecondition, errors.Is(err, ErrNotFound):
		return "", false, nil
	}
	return "", false, err
}

func (s *S3) hold(key, owner, tag string, body func() []byte) *s3Lock {
	l := &s3Lock{s: s, key: key, tag: tag, stop: make(chan struct{}), done: make(chan struct{})}
	go l.renew(body)
	return l
}

type s3Lock struct {
	s    *S3
	key  string
	mu   sync.Mutex
	tag  string
	lost error
	stop chan struct{}
	done chan struct{}
}

func (l *s3Lock) renew(body func() []byte) {
	defer close(l.done)
	t := time.NewTicker(l.s.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		tag := l.tag
		l.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), l.s.lease/3)
		nt, err := l.s.put(ctx, l.key, body(), aws.String(tag), nil)
		cancel()
		l.mu.Lock()
		if err != nil {
			l.lost = fmt.Errorf("%s%s: lock lease could not be renewed: %w", l.s, l.key, err)
			l.mu.Unlock()
			return
		}
		l.tag = nt
		l.mu.Unlock()
	}
}

func (l *s3Lock) Lost() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

func (l *s3Lock) Unlock(ctx context.Context) error {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	tag, lost := l.tag, l.lost
	l.mu.Unlock()
	if lost != nil {
		return nil // someone else may hold it now: leave it alone
	}
	// Delete only our own version of the lock object.
	_, err := l.s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(l.s.bucket), Key: aws.String(l.s.prefix + l.key), IfMatch: aws.String(tag)})
	if err != nil && isCode(err, "NotImplemented") {
		_, err = l.s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(l.s.bucket), Key: aws.String(l.s.prefix + l.key)})
	}
	if err != nil && !isCode(err, "NoSuchKey", "404", "PreconditionFailed", "412") {
		return l.s.wrap(l.key, err)
	}
	return nil
}
