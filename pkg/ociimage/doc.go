// Package ociimage writes container images as OCI image layout archives (oci-layout, index.json
// and content-addressed blobs in one tar), the form `ctr images import` and containerd's Go
// client import, and that air-gapped hosts carry around instead of pulling from a registry.
//
// Agora uses it to pack its own test workload, examples/testapp, into the image
// agora.local/testapp:latest, so that no test pulls anything from the internet:
//
//  1. build the program (statically, CGO_ENABLED=0);
//  2. WriteArchive with an Image naming it, its entrypoint and its files;
//  3. import the archive into containerd (see pkg/containerdtest).
//
// Archives are reproducible: the same Image gives the same bytes and so the same digests.
package ociimage
