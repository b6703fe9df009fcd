// Package containerdtest gives tests a real containerd and Agora's own test image.
//
// Tests of the agent, the frameworks and chaos run real containers, never pulled from the
// internet:
//
//  1. Socket finds a containerd that answers: $AGORA_CONTAINERD_SOCK (set by make test), or
//     whatever scripts/containerd.sh start gives — the system containerd, or a private one it
//     starts under .containerd/. No containerd fails the test; it never skips.
//  2. Client connects to it in the namespace "agora-test".
//  3. ImportTestApp builds examples/testapp statically, packs it with pkg/ociimage into
//     agora.local/testapp:latest, imports and unpacks it.
package containerdtest
