package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/cnikit/cnikit/cni"
	cniruntime "github.com/cnikit/cnikit/runtime"
)

// attachment is what a runtime knows of one container's interface.
type attachment struct {
	containerID, netns, ifName string
	args                       [][2]string
	capabilityArgs             map[string]any
}

// driver is a CNI runtime library: cnikit's, or the reference libcni. Both
// run plugins on the calling goroutine, so a caller inside a namespace runs
// them there.
type driver interface {
	name() string
	add(ctx context.Context, conf []byte, att attachment) ([]byte, error)
	check(ctx context.Context, conf []byte, att attachment) error
	del(ctx context.Context, conf []byte, att attachment) error
	gc(ctx context.Context, conf []byte, keep []attachment) error
	status(ctx context.Context, conf []byte) error
}

type cnikitDriver struct{ rt *cniruntime.Runtime }

func newCnikitDriver(path []string, cacheDir string) *cnikitDriver {
	return &cnikitDriver{rt: cniruntime.New(cniruntime.Config{Path: path, CacheDir: cacheDir})}
}

func (d *cnikitDriver) name() string { return "cnikit runtime" }

func (d *cnikitDriver) att(a attachment) *cniruntime.Attachment {
	return &cniruntime.Attachment{ContainerID: a.containerID, Netns: a.netns, IfName: a.ifName,
		Args: a.args, CapabilityArgs: a.capabilityArgs}
}

func (d *cnikitDriver) add(ctx context.Context, conf []byte, a attachment) ([]byte, error) {
	list, err := cni.ParseConfigList(conf)
	if err != nil {
		return nil, err
	}
	res, err := d.rt.Add(ctx, list, d.att(a))
	if err != nil {
		return nil, err
	}
	return res.Marshal(list.CNIVersion)
}

func (d *cnikitDriver) check(ctx context.Context, conf []byte, a attachment) error {
	list, err := cni.ParseConfigList(conf)
	if err != nil {
		return err
	}
	return d.rt.Check(ctx, list, d.att(a))
}

func (d *cnikitDriver) del(ctx context.Context, conf []byte, a attachment) error {
	list, err := cni.ParseConfigList(conf)
	if err != nil {
		return err
	}
	return d.rt.Del(ctx, list, d.att(a))
}

func (d *cnikitDriver) gc(ctx context.Context, conf []byte, keep []attachment) error {
	list, err := cni.ParseConfigList(conf)
	if err != nil {
		return err
	}
	valid := []cni.GCAttachment{}
	for _, k := range keep {
		valid = append(valid, cni.GCAttachment{ContainerID: k.containerID, IfName: k.ifName})
	}
	return d.rt.GC(ctx, list, valid)
}

func (d *cnikitDriver) status(ctx context.Context, conf []byte) error {
	list, err := cni.ParseConfigList(conf)
	if err != nil {
		return err
	}
	return d.rt.Status(ctx, list)
}

type libcniDriver struct{ cfg *libcni.CNIConfig }

func newLibcniDriver(path []string, cacheDir string) *libcniDriver {
	return &libcniDriver{cfg: libcni.NewCNIConfigWithCacheDir(path, cacheDir, nil)}
}

func (d *libcniDriver) name() string { return "reference libcni" }

func (d *libcniDriver) rt(a attachment) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: a.containerID, NetNS: a.netns, IfName: a.ifName,
		Args: a.args, CapabilityArgs: a.capabilityArgs}
}

func (d *libcniDriver) add(ctx context.Context, conf []byte, a attachment) ([]byte, error) {
	list, err := libcni.ConfListFromBytes(conf)
	if err != nil {
		return nil, err
	}
	res, err := d.cfg.AddNetworkList(ctx, list, d.rt(a))
	if err != nil {
		return nil, err
	}
	return json.Marshal(res)
}

func (d *libcniDriver) check(ctx context.Context, conf []byte, a attachment) error {
	list, err := libcni.ConfListFromBytes(conf)
	if err != nil {
		return err
	}
	return d.cfg.CheckNetworkList(ctx, list, d.rt(a))
}

func (d *libcniDriver) del(ctx context.Context, conf []byte, a attachment) error {
	list, err := libcni.ConfListFromBytes(conf)
	if err != nil {
		return err
	}
	return d.cfg.DelNetworkList(ctx, list, d.rt(a))
}

func (d *libcniDriver) gc(ctx context.Context, conf []byte, keep []attachment) error {
	list, err := libcni.ConfListFromBytes(conf)
	if err != nil {
		return err
	}
	args := &libcni.GCArgs{}
	for _, k := range keep {
		args.ValidAttachments = append(args.ValidAttachments, cnitypesGC(k))
	}
	return d.cfg.GCNetworkList(ctx, list, args)
}

func (d *libcniDriver) status(ctx context.Context, conf []byte) error {
	list, err := libcni.ConfListFromBytes(conf)
	if err != nil {
		return err
	}
	return d.cfg.GetStatusNetworkList(ctx, list)
}

// cliDriver is the cnikit command-line runtime: each operation runs the cnikit
// binary (add, check, del, gc, status) with the configuration written to a
// conf dir of its own. The binary inherits the calling thread's network
// namespace.
type cliDriver struct {
	bin, pluginDir, confDir, cacheDir string
}

func newCLIDriver(bin, pluginDir, confDir, cacheDir string) *cliDriver {
	return &cliDriver{bin: bin, pluginDir: pluginDir, confDir: confDir, cacheDir: cacheDir}
}

func (d *cliDriver) name() string { return "cnikit CLI" }

// run writes conf as the network's only file and runs the binary with args
// after the network name; a failure returns the CNI error it printed.
func (d *cliDriver) run(ctx context.Context, conf []byte, verb string, args ...string) ([]byte, error) {
	list, err := cni.ParseConfigList(conf)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(d.confDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(d.confDir, list.Name+".conflist"), conf, 0o644); err != nil {
		return nil, err
	}
	full := append([]string{"--conf-dir", d.confDir, "--cache-dir", d.cacheDir, "--cni-path", d.pluginDir,
		"--json", verb, list.Name}, args...)
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, d.bin, full...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var cerr cni.Error
		if json.Unmarshal(stdout.Bytes(), &cerr) == nil && cerr.Code != 0 {
			return nil, fmt.Errorf("cnikit %s: %w", verb, &cerr)
		}
		return nil, fmt.Errorf("cnikit %s: %v\n%s%s", verb, err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

func (d *cliDriver) attachmentArgs(a attachment) []string {
	args := []string{a.netns, "--container-id", a.containerID, "--ifname", a.ifName}
	if len(a.args) > 0 {
		args = append(args, "--args", cni.FormatArgs(a.args))
	}
	if a.capabilityArgs != nil {
		capArgs, _ := json.Marshal(a.capabilityArgs)
		args = append(args, "--cap-args", string(capArgs))
	}
	return args
}

func (d *cliDriver) add(ctx context.Context, conf []byte, a attachment) ([]byte, error) {
	return d.run(ctx, conf, "add", d.attachmentArgs(a)...)
}

func (d *cliDriver) check(ctx context.Context, conf []byte, a attachment) error {
	_, err := d.run(ctx, conf, "check", d.attachmentArgs(a)...)
	return err
}

func (d *cliDriver) del(ctx context.Context, conf []byte, a attachment) error {
	_, err := d.run(ctx, conf, "del", d.attachmentArgs(a)...)
	return err
}

// gc keeps the cached attachments whose namespace exists, as `cnikit gc`
// does: keep must name exactly those.
func (d *cliDriver) gc(ctx context.Context, conf []byte, keep []attachment) error {
	_, err := d.run(ctx, conf, "gc")
	return err
}

func (d *cliDriver) status(ctx context.Context, conf []byte) error {
	_, err := d.run(ctx, conf, "status")
	return err
}

// codeOf returns the CNI error code in err's chain, whichever library made
// the error: libcni returns the reference's types.Error.
func codeOf(err error) cni.Code {
	var ref *types.Error
	if errors.As(err, &ref) {
		return cni.Code(ref.Code)
	}
	var own *cni.Error
	if errors.As(err, &own) {
		return own.Code
	}
	return 0
}
