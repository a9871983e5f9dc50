package link

import (
	"errors"
	"fmt"
	"math"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Traffic control (tc) over netlink: the token bucket filters, the ingress
// redirect and the IFB devices the bandwidth plugin shapes traffic with.
// Every function acts on the calling thread's namespace and asks the kernel
// about one device only: no dump of every qdisc or link on the host, so the
// cost does not grow with the number of containers.

// TBFLatency is how long, in microseconds, a packet may wait in a token
// bucket filter's queue: the reference bandwidth plugin's 25 ms.
const TBFLatency = 25000

// tbfHandle is the root TBF's handle, 1:, as the reference makes it.
var tbfHandle = netlink.MakeHandle(1, 0)

// ingressHandle is the ingress qdisc's handle, ffff:.
var ingressHandle = netlink.MakeHandle(0xffff, 0)

// TBF is a token bucket filter's parameters in the kernel's units.
type TBF struct {
	// Rate in bytes per second.
	Rate uint64
	// Buffer is the time, in psched ticks, it takes to send the burst at
	// Rate.
	Buffer uint32
	// Limit is how many bytes may wait in the queue: Rate × TBFLatency plus
	// the burst.
	Limit uint32
}

// NewTBF computes the parameters for a rate in bits per second and a burst in
// bits with the reference plugin's arithmetic, truncations included, so that
// a TBF made by either plugin passes the other's CHECK. It fails when a value
// does not fit the kernel's 32-bit fields: a burst of 4 GiB or more, or one
// that takes longer than about 270 s to send at the rate.
func NewTBF(rateBits, burstBits uint64) (TBF, error) {
	rate, burst := rateBits/8, burstBits/8
	if rate == 0 {
		return TBF{}, fmt.Errorf("rate %d bit/s is below 8 bit/s", rateBits)
	}
	if burst == 0 {
		return TBF{}, fmt.Errorf("burst %d bits is below 8 bits", burstBits)
	}
	if burst >= math.MaxUint32 {
		return TBF{}, fmt.Errorf("burst %d bits is 4 GiB or more", burstBits)
	}
	usec := float64(burst) * 1e6 / float64(rate)
	ticks := float64(uint32(usec)) * netlink.TickInUsec()
	if usec >= math.MaxUint32 || ticks >= math.MaxUint32 {
		return TBF{}, fmt.Errorf("burst %d bits takes %.0f s to send at %d bit/s, more than a TBF can hold", burstBits, usec/1e6, rateBits)
	}
	limit := uint64(float64(rate)*TBFLatency/1e6) + burst
	if limit > math.MaxUint32 {
		limit = math.MaxUint32
	}
	return TBF{Rate: rate, Buffer: uint32(ticks), Limit: uint32(limit)}, nil
}

// SetRootTBF makes a TBF with handle 1: the root qdisc of the link at index,
// replacing the root qdisc there (a TBF already there is changed in place).
func SetRootTBF(index int, t TBF) error {
	q := &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: index, Handle: tbfHandle, Parent: netlink.HANDLE_ROOT},
		Rate:       t.Rate, Buffer: t.Buffer, Limit: t.Limit,
	}
	if err := netlink.QdiscReplace(q); err != nil {
		return fmt.Errorf("setting the root tbf of link %d: %w", index, err)
	}
	return nil
}

// ErrNoTBF is returned (wrapped) by RootTBF when the link's root qdisc is not
// a TBF with handle 1:.
var ErrNoTBF = errors.New("no tbf root qdisc")

// RootTBF reads the root TBF of the link at index with one targeted
// RTM_GETQDISC.
func RootTBF(index int) (TBF, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETQDISC, unix.NLM_F_ACK|unix.NLM_F_ECHO)
	req.AddData(&nl.TcMsg{Family: nl.FAMILY_ALL, Ifindex: int32(index), Parent: netlink.HANDLE_ROOT})
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWQDISC)
	if errors.Is(err, unix.ENOENT) {
		return TBF{}, fmt.Errorf("link %d: %w", index, ErrNoTBF)
	}
	if err != nil {
		return TBF{}, fmt.Errorf("reading the root qdisc of link %d: %w", index, err)
	}
	// The kernel echoes nothing for a built-in default qdisc (noqueue).
	if len(msgs) == 0 {
		return TBF{}, fmt.Errorf("link %d: %w", index, ErrNoTBF)
	}
	m := msgs[0]
	msg := nl.DeserializeTcMsg(m)
	attrs, err := nl.ParseRouteAttr(m[msg.Len():])
	if err != nil {
		return TBF{}, err
	}
	var kind string
	var t TBF
	var params bool
	for _, a := range attrs {
		switch a.Attr.Type {
		case nl.TCA_KIND:
			kind = unix.ByteSliceToString(a.Value)
		case nl.TCA_OPTIONS:
			opts, err := nl.ParseRouteAttr(a.Value)
			if err != nil {
				return TBF{}, err
			}
			for _, o := range opts {
				switch o.Attr.Type {
				case nl.TCA_TBF_PARMS:
					if len(o.Value) < nl.SizeofTcTbfQopt {
						continue
					}
					q := nl.DeserializeTcTbfQopt(o.Value)
					t.Buffer, t.Limit, params = q.Buffer, q.Limit, true
					if t.Rate == 0 {
						t.Rate = uint64(q.Rate.Rate)
					}
				case nl.TCA_TBF_RATE64:
					if len(o.Value) >= 8 {
						t.Rate = nl.NativeEndian().Uint64(o.Value)
					}
				}
			}
		}
	}
	if kind != "tbf" || msg.Handle != tbfHandle || !params {
		return TBF{}, fmt.Errorf("link %d has a %s root qdisc with handle %x: %w", index, kind, msg.Handle, ErrNoTBF)
	}
	return t, nil
}

// DeleteRootTBF removes the root TBF with handle 1: from the link at index.
// Nothing to remove is success: another root qdisc (the kernel checks handle
// and kind), or no link at all.
func DeleteRootTBF(index int) error {
	return deleteQdisc(index, netlink.HANDLE_ROOT, tbfHandle, "tbf")
}

// DeleteIngress removes the ingress qdisc, and with it its filters, from the
// link at index. None, or no link, is success.
func DeleteIngress(index int) error {
	return deleteQdisc(index, netlink.HANDLE_INGRESS, ingressHandle, "ingress")
}

func deleteQdisc(index int, parent, handle uint32, kind string) error {
	req := nl.NewNetlinkRequest(unix.RTM_DELQDISC, unix.NLM_F_ACK)
	req.AddData(&nl.TcMsg{Family: nl.FAMILY_ALL, Ifindex: int32(index), Parent: parent, Handle: handle})
	req.AddData(nl.NewRtAttr(nl.TCA_KIND, nl.ZeroTerminated(kind)))
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	switch {
	case err == nil, errors.Is(err, unix.ENOENT), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENODEV):
		return nil
	}
	return fmt.Errorf("deleting the %s qdisc of link %d: %w", kind, index, err)
}

// RedirectIngress sends every packet arriving on the link at index to the
// egress of the link at target: an ingress qdisc ffff: with a u32 match-all
// filter (priority 1, all protocols) whose action is a mirred egress
// redirect, as `tc filter add dev X parent ffff: protocol all u32 match u32
// 0 0 action mirred egress redirect dev IFB` makes it. An ingress qdisc
// already there is replaced, so that a repeated call leaves one filter.
func RedirectIngress(index, target int) error {
	ingress := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: index, Handle: ingressHandle, Parent: netlink.HANDLE_INGRESS}}
	err := netlink.QdiscAdd(ingress)
	if errors.Is(err, unix.EEXIST) {
		if err = DeleteIngress(index); err == nil {
			err = netlink.QdiscAdd(ingress)
		}
	}
	if err != nil {
		return fmt.Errorf("adding the ingress qdisc of link %d: %w", index, err)
	}
	filter := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: index, Parent: ingressHandle, Priority: 1, Protocol: unix.ETH_P_ALL},
		ClassId:     netlink.MakeHandle(1, 1),
		Actions:     []netlink.Action{netlink.NewMirredAction(target)},
	}
	if err := netlink.FilterAdd(filter); err != nil {
		return fmt.Errorf("adding the redirect filter of link %d: %w", index, err)
	}
	return nil
}

// IngressRedirectTarget returns the index of the link the ingress filters of
// the link at index redirect to, or 0 when none does.
func IngressRedirectTarget(index int) (int, error) {
	filters, err := netlink.FilterList(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: index}}, ingressHandle)
	if err != nil {
		return 0, fmt.Errorf("listing the ingress filters of link %d: %w", index, err)
	}
	for _, f := range filters {
		u32, ok := f.(*netlink.U32)
		if !ok {
			continue
		}
		for _, a := range u32.Actions {
			if m, ok := a.(*netlink.MirredAction); ok && m.MirredAction == netlink.TCA_EGRESS_REDIR {
				return m.Ifindex, nil
			}
		}
	}
	return 0, nil
}

// CreateIFB creates an intermediate functional block device, up, with the
// given MTU (0: the kernel's default), the kernel's default queue length, and
// alias as its IFLA_IFALIAS, and returns it as the kernel reports it. A link
// already called name is an error wrapping ErrExists.
//
// Two round trips: an RTM_NEWLINK that asks the kernel to echo the new link
// (so no lookup by name follows), then the alias, which the kernel ignores
// on creation.
func CreateIFB(name string, mtu int, alias string) (netlink.Link, error) {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK|unix.NLM_F_ECHO)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Flags, msg.Change = unix.IFF_UP, unix.IFF_UP
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	if mtu > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(mtu))))
	}
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("ifb"))
	req.AddData(info)
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		if errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("creating ifb %q: %w", name, ErrExists)
		}
		return nil, fmt.Errorf("creating ifb %q: %w", name, err)
	}
	var ifb netlink.Link
	if len(msgs) > 0 {
		ifb, err = netlink.LinkDeserialize(nil, msgs[0])
	}
	if ifb == nil || err != nil {
		// A kernel older than 6.1 does not echo.
		if ifb, err = netlink.LinkByName(name); err != nil {
			return nil, fmt.Errorf("looking up new ifb %q: %w", name, err)
		}
	}
	if alias != "" {
		if err := SetAttributes(ifb.Attrs().Index, Attributes{Alias: &alias}); err != nil {
			_ = DeleteNamed(name)
			return nil, fmt.Errorf("ifb %q: %w", name, err)
		}
		ifb.Attrs().Alias = alias
	}
	return ifb, nil
}

// DeleteNamed deletes the link called name with a single RTM_DELLINK that
// names it (no lookup first). A missing link is not an error.
func DeleteNamed(name string) error {
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	if err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("deleting %q: %w", name, err)
	}
	return nil
}

// IFBs lists the IFB devices of the calling thread's namespace. It dumps
// every link, so it is for GC, not for a verb's hot path.
func IFBs() ([]*netlink.Ifb, error) {
	links, err := netlink.LinkList()
	// A dump interrupted by a concurrent change is retried a few times; a
	// last partial one only makes GC miss an IFB until its next run.
	for try := 0; errors.Is(err, netlink.ErrDumpInterrupted) && try < 3; try++ {
		links, err = netlink.LinkList()
	}
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	var ifbs []*netlink.Ifb
	for _, l := range links {
		if ifb, ok := l.(*netlink.Ifb); ok {
			ifbs = append(ifbs, ifb)
		}
	}
	return ifbs, nil
}
