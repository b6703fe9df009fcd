package containerd

import (
	"context"
	"fmt"
	"io"
	"time"

	ctrd "github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/namespaces"
	"github.com/distribution/reference"
)

// PullTimeout bounds one image pull.
const PullTimeout = 10 * time.Minute

// NormalizeImage turns what a user writes ("nginx", "nginx:1.27", "quay.io/x/y@sha256:...") into
// the full reference containerd stores images under ("docker.io/library/nginx:latest").
func NormalizeImage(ref string) (string, error) {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", fmt.Errorf("%w: image name %q: %v", ErrBadSpec, ref, err)
	}
	return named.String(), nil
}

// EnsureImage returns the image, unpacked, pulling it from its registry when it is not on this
// agent yet (or always, with force).
func (e *Executor) EnsureImage(ctx context.Context, ref string, force bool) (ctrd.Image, error) {
	ctx = e.ctx(ctx)
	name, err := NormalizeImage(ref)
	if err != nil {
		return nil, err
	}
	if !force {
		for _, n := range []string{name, ref} {
			img, err := e.cfg.Client.GetImage(ctx, n)
			if err == nil {
				if err := unpack(ctx, img); err != nil {
					return nil, err
				}
				return img, nil
			}
			if !errdefs.IsNotFound(err) {
				return nil, fmt.Errorf("containerd: image %s: %w", ref, err)
			}
		}
	}
	pctx, cancel := context.WithTimeout(ctx, PullTimeout)
	defer cancel()
	img, err := e.cfg.Client.Pull(pctx, name, ctrd.WithPullUnpack)
	if err != nil {
		return nil, fmt.Errorf("containerd: image %s is not on this agent and pulling %s failed (import it with 'agora image import FILE.tar' where the agent has no registry): %w", ref, name, err)
	}
	return img, nil
}

func unpack(ctx context.Context, img ctrd.Image) error {
	ok, err := img.IsUnpacked(ctx, ctrd.DefaultSnapshotter)
	if err != nil {
		return fmt.Errorf("containerd: image %s: %w", img.Name(), err)
	}
	if ok {
		return nil
	}
	if err := img.Unpack(ctx, ctrd.DefaultSnapshotter); err != nil {
		return fmt.Errorf("containerd: unpack %s: %w", img.Name(), err)
	}
	return nil
}

// Import reads an OCI image layout or `docker save` archive into the executor's namespace,
// unpacks every image in it, and returns their names.
func Import(ctx context.Context, client *ctrd.Client, namespace string, r io.Reader) ([]string, error) {
	ctx = namespaces.WithNamespace(ctx, namespace)
	imgs, err := client.Import(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("containerd: import: %w", err)
	}
	var names []string
	for _, im := range imgs {
		if err := unpack(ctx, ctrd.NewImage(client, im)); err != nil {
			return names, err
		}
		names = append(names, im.Name)
	}
	return names, nil
}

// Images lists the images in a namespace.
func Images(ctx context.Context, client *ctrd.Client, namespace string) ([]images.Image, error) {
	return client.ImageService().List(namespaces.WithNamespace(ctx, namespace))
}
