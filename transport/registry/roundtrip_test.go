package registry

import (
	"context"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/kiln-build/kiln/exporter/compression"
	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/store/v1image/v1imagetest"
)

// push → pull: the registry holds a valid image (ggcr's validate reads it
// back: gzip layers that gunzip to the diff IDs, the config byte for
// byte), and the image pulled into another store is the pushed one and
// valid too; likewise with zstd and docker's media types.
func TestPushPullRoundTripIsValid(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	ctx := context.Background()
	cs, desc, _ := testImage(t)
	v1imagetest.Validate(t, cs, desc)
	im, err := cs.ReadImage(desc)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts PushOptions
	}{
		{"gzip", PushOptions{}},
		{"zstd", PushOptions{Compression: compression.Options{Algorithm: compression.Zstd, Level: compression.DefaultZstdLevel}}},
		{"docker", PushOptions{DockerMediaTypes: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := reg.Ref("round/trip:" + tc.name)
			res, err := Push(ctx, cs, desc, ref, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			r, err := Config{}.Parse(ref)
			if err != nil {
				t.Fatal(err)
			}
			ropts, err := Config{}.RemoteOptions(ctx)
			if err != nil {
				t.Fatal(err)
			}
			img, err := remote.Image(r, ropts...)
			if err != nil {
				t.Fatal(err)
			}
			var vopts []validate.Option
			if tc.opts.Compression.Algorithm == compression.Zstd {
				vopts = append(vopts, validate.Fast) // validate reads layers through gzip only
			}
			if err := validate.Image(img, vopts...); err != nil {
				t.Errorf("validate the pushed image: %v", err)
			}
			if d, _ := img.Digest(); d.String() != string(res.Digest) {
				t.Errorf("registry has %s, push said %s", d, res.Digest)
			}
			if id, _ := img.ConfigName(); id.String() != string(im.ID()) {
				t.Errorf("config in the registry %s, image ID %s", id, im.ID())
			}

			other := openStore(t)
			pulled, err := Pull(ctx, other, ref, PullOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if pulled.Manifest.Digest != desc.Digest {
				t.Errorf("pulled manifest %s, pushed %s", pulled.Manifest.Digest, desc.Digest)
			}
			v1imagetest.Validate(t, other, pulled.Manifest)
		})
	}
}
