package blob

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/idemhq/idem"
	"github.com/idemhq/idem/conformance"
)

var bucketOnce sync.Map

// s3URL returns IDEM_TEST_S3 with a fresh prefix, so tests never see each
// other's objects. The bucket is created when missing.
func s3URL(t *testing.T) string {
	t.Helper()
	base := conformance.ServerURL(t, "IDEM_TEST_S3")
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("IDEM_TEST_S3: %v", err)
	}
	if _, done := bucketOnce.LoadOrStore(u.Host, true); !done {
		ensureBucket(t, u)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	u.Path = strings.TrimSuffix(u.Path, "/") + "/t" + hex.EncodeToString(b[:])
	prefix := strings.TrimPrefix(u.Path, "/") + "/"
	t.Cleanup(func() { removePrefix(t, u, prefix) })
	return u.String()
}

// removePrefix deletes what a test left under its prefix, so repeated runs
// do not fill the server's disk.
func removePrefix(t *testing.T, u *url.URL, prefix string) {
	c := s3Client(t, u)
	ctx := context.Background()
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(u.Host), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return
		}
		for _, o := range page.Contents {
			c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(u.Host), Key: o.Key})
		}
	}
}

func s3Client(t *testing.T, u *url.URL) *s3.Client {
	t.Helper()
	region := u.Query().Get("region")
	if region == "" {
		region = "us-east-1"
	}
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithRegion(region))
	if err != nil {
		t.Fatal(err)
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		if ep := u.Query().Get("endpoint"); ep != "" {
			o.BaseEndpoint = aws.String(ep)
			o.UsePathStyle = true
		}
	})
}

func ensureBucket(t *testing.T, u *url.URL) {
	t.Helper()
	c := s3Client(t, u)
	ctx := context.Background()
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(u.Host)}); err == nil {
		return
	}
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(u.Host)}); err != nil && !strings.Contains(err.Error(), "BucketAlreadyOwnedByYou") {
		t.Fatalf("create bucket %s: %v", u.Host, err)
	}
}

func TestConformanceS3(t *testing.T) {
	conformance.Run(t, conformance.Backend{
		Name: "s3",
		NewURL: func(t *testing.T) string {
			// A short lease: the crash test's killed loads leave their
			// lock object behind, and the rerun waits it out.
			return withParam(s3URL(t), "lease", "2s")
		},
		Open:       func(ctx context.Context, url string) (idem.Target, error) { return Open(ctx, url) },
		NoQuery:    noQuery,
		NoTableKey: noTableKey,
	})
}

func withParam(raw, k, v string) string {
	u, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	q := u.Query()
	q.Set(k, v)
	u.RawQuery = q.Encode()
	return u.String()
}
