package tuning

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/cnikit/cnikit/internal/link"
)

// backup is what ADD found before changing anything, so that DEL can put it
// back: the file <dataDir>/<containerID>_<ifName>.json. The first five keys
// are the reference plugin's format, so that each plugin restores what the
// other saved (a field is present only when it was changed); the others are
// cnikit's and the reference ignores them.
type backup struct {
	Mac      string `json:"mac,omitempty"`
	Promisc  *bool  `json:"promisc,omitempty"`
	Mtu      int    `json:"mtu,omitempty"`
	Allmulti *bool  `json:"allmulti,omitempty"`
	TxQLen   *int   `json:"txQLen,omitempty"`

	Alias *string `json:"alias,omitempty"`
	// Sysctls are the old values in the order they were changed; DEL
	// writes them back in reverse.
	Sysctls []savedSysctl `json:"sysctls,omitempty"`
	// The attachment, so that GC can tell which network a file belongs to.
	Network     string `json:"network,omitempty"`
	ContainerID string `json:"containerID,omitempty"`
	IfName      string `json:"ifName,omitempty"`
}

// savedSysctl is one sysctl's value before ADD changed it.
type savedSysctl struct {
	// Path is below /proc/sys, as resolved at ADD (IFNAME replaced).
	Path  string `json:"path"`
	Value string `json:"value"`
}

// backupPath is the reference's file name for an attachment.
func backupPath(dataDir, containerID, ifName string) string {
	return filepath.Join(dataDir, containerID+"_"+ifName+".json")
}

// readBackup reads a backup file; a missing one gives (nil, nil). Unknown
// keys are tolerated here (a newer plugin may add some); GC is stricter.
func readBackup(path string) (*backup, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var b backup
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("backup file %s: %w", path, err)
	}
	return &b, nil
}

// readOwnBackup reads a file for GC: it must decode as a backup with no key
// a backup does not have, so that a data directory shared with other files
// never loses one of them.
func readOwnBackup(path string) (*backup, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var b backup
	if err := dec.Decode(&b); err != nil || dec.More() {
		return nil, false
	}
	return &b, true
}

// writeBackup writes b atomically (a temporary file renamed over the name),
// creating the directory (0700) when needed. /run is a tmpfs, so the data is
// not synced: a reboot takes the interfaces with it.
func writeBackup(path string, b *backup) error {
	data, err := json.Marshal(b)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".tuning-*")
	if errors.Is(err, os.ErrNotExist) {
		if err = os.MkdirAll(dir, 0o700); err == nil {
			tmp, err = os.CreateTemp(dir, ".tuning-*")
		}
	}
	if err != nil {
		return fmt.Errorf("creating backup file in %s: %w", dir, err)
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing backup file %s: %w", path, err)
	}
	return nil
}

// record saves the link's current values of the attributes that a changes,
// keeping any value b already holds (from an earlier ADD of the same
// attachment, which saw the original).
func (b *backup) record(current, a link.Attributes) {
	if len(a.MAC) > 0 && b.Mac == "" {
		b.Mac = current.MAC.String()
	}
	if a.MTU != 0 && b.Mtu == 0 {
		b.Mtu = current.MTU
	}
	if a.TxQLen != nil && b.TxQLen == nil {
		b.TxQLen = current.TxQLen
	}
	if a.Promisc != nil && b.Promisc == nil {
		b.Promisc = current.Promisc
	}
	if a.Allmulti != nil && b.Allmulti == nil {
		b.Allmulti = current.Allmulti
	}
	if a.Alias != nil && b.Alias == nil {
		b.Alias = current.Alias
	}
}

// recordSysctl saves a sysctl's old value unless one is saved already.
func (b *backup) recordSysctl(path, value string) {
	for _, s := range b.Sysctls {
		if s.Path == path {
			return
		}
	}
	b.Sysctls = append(b.Sysctls, savedSysctl{Path: path, Value: value})
}

// attributes are the interface settings to restore. A MAC that does not
// parse is skipped rather than failing the whole restore.
func (b *backup) attributes() link.Attributes {
	a := link.Attributes{MTU: b.Mtu, TxQLen: b.TxQLen, Promisc: b.Promisc, Allmulti: b.Allmulti, Alias: b.Alias}
	if b.Mac != "" {
		if mac, err := net.ParseMAC(b.Mac); err == nil {
			a.MAC = mac
		}
	}
	return a
}
