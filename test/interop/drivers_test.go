package interop

import (
	"context"
	"encoding/json"

	"github.com/containernetworking/cni/libcni"

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
