package interop

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// busyboxImage is the one container image of these tests, made without any
// registry from Debian's busybox-static: /bin/busybox, a link per applet in
// /bin, /etc/passwd and /etc/group, and /www/index.html for httpd. It is
// built once per test process and imported into each runtime's own store.
type busyboxImage struct {
	// rootfsTar is the root filesystem as a plain tar, for `podman import`
	// and `docker import`.
	rootfsTar string
	// ociArchive is an OCI image layout in a tar, for `ctr images import`;
	// the image is named ociImageName.
	ociArchive string
}

// busyboxPage is what /www/index.html holds.
const busyboxPage = "served by busybox through cnikit\n"

// ociImageName is the name the OCI archive gives its image in containerd.
const ociImageName = "docker.io/cnikit/busybox:test"

var (
	imageOnce sync.Once
	imageDir  string
	image     busyboxImage
	imageErr  error
)

// busybox returns the image, building it on first use.
func busybox(t *testing.T) busyboxImage {
	t.Helper()
	imageOnce.Do(func() {
		imageDir, imageErr = os.MkdirTemp("", "cnikit-interop-image-")
		if imageErr == nil {
			image, imageErr = buildBusyboxImage(imageDir)
		}
	})
	if imageErr != nil {
		t.Fatalf("building the busybox image: %v", imageErr)
	}
	return image
}

// removeBusyboxImage removes the image files at the end of the test process.
func removeBusyboxImage() {
	if imageDir != "" {
		os.RemoveAll(imageDir)
	}
}

func buildBusyboxImage(dir string) (busyboxImage, error) {
	const busyboxPath = "/bin/busybox"
	bin, err := os.ReadFile(busyboxPath)
	if err != nil {
		return busyboxImage{}, fmt.Errorf("%w (apt-get install busybox-static)", err)
	}
	list, err := exec.Command(busyboxPath, "--list").Output()
	if err != nil {
		return busyboxImage{}, fmt.Errorf("busybox --list: %w", err)
	}
	layer, err := rootfsTar(bin, strings.Fields(string(list)))
	if err != nil {
		return busyboxImage{}, err
	}
	img := busyboxImage{rootfsTar: filepath.Join(dir, "rootfs.tar"), ociArchive: filepath.Join(dir, "oci.tar")}
	if err := os.WriteFile(img.rootfsTar, layer, 0o644); err != nil {
		return busyboxImage{}, err
	}
	archive, err := ociLayoutTar(layer)
	if err != nil {
		return busyboxImage{}, err
	}
	return img, os.WriteFile(img.ociArchive, archive, 0o644)
}

// rootfsTar lays out the root filesystem. Times are fixed so that the same
// busybox gives the same layer digest.
func rootfsTar(busybox []byte, applets []string) ([]byte, error) {
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	when := time.Unix(1700000000, 0)
	dir := func(name string, mode int64) error {
		return w.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: when})
	}
	file := func(name string, mode int64, content []byte) error {
		if err := w.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(content)), ModTime: when}); err != nil {
			return err
		}
		_, err := w.Write(content)
		return err
	}
	for _, d := range []string{"bin", "etc", "www", "root", "proc", "sys", "dev", "run", "var"} {
		if err := dir(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := dir("tmp", 0o1777); err != nil {
		return nil, err
	}
	if err := file("bin/busybox", 0o755, busybox); err != nil {
		return nil, err
	}
	for _, applet := range applets {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := w.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + applet, Linkname: "busybox", Mode: 0o777, ModTime: when}); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct{ name, content string }{
		{"etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"},
		{"etc/group", "root:x:0:\nnogroup:x:65534:\n"},
		{"www/index.html", busyboxPage},
	} {
		if err := file(f.name, 0o644, []byte(f.content)); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ociLayoutTar wraps the layer in an OCI image layout (image-spec v1: an
// uncompressed layer, its config, a manifest and an index naming the image).
func ociLayoutTar(layer []byte) ([]byte, error) {
	type descriptor struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int               `json:"size"`
		Platform    map[string]string `json:"platform,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	blobs := map[string][]byte{}
	describe := func(mediaType string, content []byte) descriptor {
		sum := sha256.Sum256(content)
		digest := "sha256:" + hex.EncodeToString(sum[:])
		blobs[digest] = content
		return descriptor{MediaType: mediaType, Digest: digest, Size: len(content)}
	}
	layerDesc := describe("application/vnd.oci.image.layer.v1.tar", layer)
	config, _ := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       map[string]any{"Env": []string{"PATH=/bin"}, "Cmd": []string{"/bin/sh"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{layerDesc.Digest}},
	})
	configDesc := describe("application/vnd.oci.image.config.v1+json", config)
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        configDesc,
		"layers":        []descriptor{layerDesc},
	})
	manifestDesc := describe("application/vnd.oci.image.manifest.v1+json", manifest)
	manifestDesc.Platform = map[string]string{"architecture": runtime.GOARCH, "os": "linux"}
	manifestDesc.Annotations = map[string]string{
		"io.containerd.image.name":          ociImageName,
		"org.opencontainers.image.ref.name": "test",
	}
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []descriptor{manifestDesc}})

	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	add := func(name string, content []byte) error {
		if err := w.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content))}); err != nil {
			return err
		}
		_, err := w.Write(content)
		return err
	}
	if err := add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return nil, err
	}
	if err := add("index.json", index); err != nil {
		return nil, err
	}
	for digest, content := range blobs {
		if err := add("blobs/sha256/"+strings.TrimPrefix(digest, "sha256:"), content); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
