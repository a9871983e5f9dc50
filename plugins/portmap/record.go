package portmap

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/nft"
	"github.com/cnikit/cnikit/internal/rundir"
)

// stateDir holds one record per attachment with mappings:
// <stateDir>/<network>/<containerID>_<ifname>. A record lists the mappings
// exactly as ADD programmed them, so that DEL deletes the attachment's
// nftables elements by key (constant cost, no listing) without the runtime
// resending portMappings or prevResult. It is rundir.Plugin("portmap")
// (/run/cni/portmap): after a reboot neither the records nor the nftables
// elements exist. In-process tests set stateDir to a temporary directory.
var stateDir = ""

// recordsRoot is the directory holding the records.
func recordsRoot() string {
	if stateDir != "" {
		return stateDir
	}
	return rundir.Plugin("portmap")
}

// record is the on-disk form of an attachment's mappings.
type record struct {
	Network     string            `json:"network"`
	ContainerID string            `json:"containerID"`
	IfName      string            `json:"ifname"`
	Mappings    []recordedMapping `json:"mappings"`
}

type recordedMapping struct {
	HostIP        string   `json:"hostIP,omitempty"`
	Protocol      string   `json:"protocol"`
	HostPort      uint16   `json:"hostPort"`
	Container     string   `json:"container"` // address/prefix length
	ContainerPort uint16   `json:"containerPort"`
	Sources       []string `json:"sources,omitempty"` // "first-last"; absent: any
	Destinations  []string `json:"destinations,omitempty"`
	SNAT          string   `json:"snat"`
}

var snatNames = map[nft.SNATMode]string{nft.SNATNone: "none", nft.SNATHairpin: "hairpin", nft.SNATAll: "all"}

func (r *record) attachment() nft.Attachment {
	return nft.Attachment{Network: r.Network, ContainerID: r.ContainerID, IfName: r.IfName}
}

func recordOf(a nft.Attachment, ports []nft.HostPort) *record {
	r := &record{Network: a.Network, ContainerID: a.ContainerID, IfName: a.IfName}
	ranges := func(rs []nft.IPRange) []string {
		var out []string
		for _, x := range rs {
			out = append(out, x.First.String()+"-"+x.Last.String())
		}
		return out
	}
	for _, p := range ports {
		m := recordedMapping{
			Protocol: protocolName(p.Protocol), HostPort: p.Port, Container: p.Container.String(),
			ContainerPort: p.ContainerPort, Sources: ranges(p.Sources), Destinations: ranges(p.Destinations),
			SNAT: snatNames[p.SNAT],
		}
		if p.HostIP != nil {
			m.HostIP = p.HostIP.String()
		}
		r.Mappings = append(r.Mappings, m)
	}
	return r
}

// hostPorts decodes the recorded mappings.
func (r *record) hostPorts() ([]nft.HostPort, error) {
	var out []nft.HostPort
	ranges := func(ss []string) ([]nft.IPRange, error) {
		var rs []nft.IPRange
		for _, s := range ss {
			first, last, _ := strings.Cut(s, "-")
			a, err1 := netip.ParseAddr(first)
			b, err2 := netip.ParseAddr(last)
			if err := errors.Join(err1, err2); err != nil {
				return nil, err
			}
			rs = append(rs, nft.IPRange{First: a, Last: b})
		}
		return rs, nil
	}
	for _, m := range r.Mappings {
		p := nft.HostPort{Protocol: protocols[m.Protocol], Port: m.HostPort, ContainerPort: m.ContainerPort}
		if p.Protocol == 0 {
			return nil, fmt.Errorf("protocol %q", m.Protocol)
		}
		if m.HostIP != "" {
			if p.HostIP = net.ParseIP(m.HostIP); p.HostIP == nil {
				return nil, fmt.Errorf("hostIP %q", m.HostIP)
			}
		}
		ip, subnet, err := net.ParseCIDR(m.Container)
		if err != nil {
			return nil, err
		}
		p.Container = net.IPNet{IP: ip, Mask: subnet.Mask}
		if p.Sources, err = ranges(m.Sources); err != nil {
			return nil, err
		}
		if p.Destinations, err = ranges(m.Destinations); err != nil {
			return nil, err
		}
		found := false
		for mode, name := range snatNames {
			if name == m.SNAT {
				p.SNAT, found = mode, true
			}
		}
		if !found {
			return nil, fmt.Errorf("snat %q", m.SNAT)
		}
		out = append(out, p)
	}
	return out, nil
}

func recordPath(a nft.Attachment) string {
	return filepath.Join(recordsRoot(), a.Network, a.ContainerID+"_"+a.IfName)
}

// readRecord returns the attachment's record, or nil when there is none.
func readRecord(a nft.Attachment) (*record, error) {
	return readRecordFile(recordPath(a))
}

func readRecordFile(path string) (*record, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, cni.Errorf(cni.CodeIOFailure, "portmap: reading %s: %v", path, err)
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("portmap: %s is not a record: %w", path, err)
	}
	return &r, nil
}

// writeRecord replaces the attachment's record atomically.
func writeRecord(r *record) error {
	path := recordPath(r.attachment())
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	// A DEL of the network's last other record removes the directory
	// (removeRecord), possibly while this creates it or writes into it: then
	// try again.
	for attempt := 1; ; attempt++ {
		err := os.MkdirAll(filepath.Dir(path), 0o700)
		if err == nil {
			err = os.WriteFile(tmp, data, 0o600)
		}
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) && !errors.Is(err, fs.ErrNotExist) || attempt == 5 {
			return cni.Errorf(cni.CodeIOFailure, "portmap: writing %s: %v", tmp, err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return cni.Errorf(cni.CodeIOFailure, "portmap: %v", err)
	}
	return nil
}

// removeRecord deletes the attachment's record; a missing one is fine. The
// network's directory goes with its last record.
func removeRecord(a nft.Attachment) error {
	if err := os.Remove(recordPath(a)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return cni.Errorf(cni.CodeIOFailure, "portmap: %v", err)
	}
	removeNetworkDir(a.Network)
	return nil
}

// removeNetworkDir removes network's record directory when it is empty, so
// that a network's name does not outlive its last mapping. While the
// directory holds a record, or a file an ADD is writing, removal fails and
// changes nothing.
func removeNetworkDir(network string) {
	os.Remove(filepath.Join(recordsRoot(), network))
}

// networkRecords returns the paths of network's records.
func networkRecords(network string) ([]string, error) {
	dir := filepath.Join(recordsRoot(), network)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, cni.Errorf(cni.CodeIOFailure, "portmap: %v", err)
	}
	var paths []string
	for _, e := range entries {
		if e.Type().IsRegular() && !strings.HasSuffix(e.Name(), ".tmp") {
			paths = append(paths, filepath.Join(dir, e.Name()))
		}
	}
	return paths, nil
}
