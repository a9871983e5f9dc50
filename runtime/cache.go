package runtime

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cnikit/cnikit/cni"
)

// The result cache, in the reference library's layout and format so that
// cnitool, Podman and cnikit read each other's entries:
//
//	<CacheDir>/results/<network>-<containerID>-<ifname>   (directory 0700, file 0600)
//	{"kind":"cniCacheV1","containerId":"…","config":"<base64 of the list's bytes>",
//	 "ifName":"…","networkName":"…","netns":"…","cniArgs":[["K","V"]],
//	 "capabilityArgs":{…},"result":{…}}
//
// The entry is written after a whole ADD succeeded and removed after a whole
// DEL did. Unlike the reference library, cnikit writes it atomically (a
// temporary file renamed into place), so a crashed process never leaves half
// an entry. It is not fsynced: a sync costs milliseconds per ADD, and what an
// entry describes (a container's namespace and interfaces) does not survive
// the crash of the host that would make the sync matter; an entry lost or
// emptied by one reads as absent, and DEL then proceeds without prevResult.

// cacheKind marks a cache entry of the current format.
const cacheKind = "cniCacheV1"

// cacheEntry is an entry of the result cache. Written entries carry the
// result as a map (R = map[string]any) so that its keys come out sorted, byte
// for byte as the reference library writes them; read entries keep it raw
// (R = json.RawMessage).
type cacheEntry[R any] struct {
	Kind           string         `json:"kind"`
	ContainerID    string         `json:"containerId"`
	Config         []byte         `json:"config"`
	IfName         string         `json:"ifName"`
	NetworkName    string         `json:"networkName"`
	Netns          string         `json:"netns,omitempty"`
	CNIArgs        [][2]string    `json:"cniArgs,omitempty"`
	CapabilityArgs map[string]any `json:"capabilityArgs,omitempty"`
	Result         R              `json:"result,omitempty"`
}

type (
	cacheEntryOut = cacheEntry[map[string]any]
	cacheEntryIn  = cacheEntry[json.RawMessage]
)

// CachedAttachment is one entry of the result cache: an attachment that was
// added and not yet deleted (the reference library's NetworkAttachment).
type CachedAttachment struct {
	ContainerID    string
	Network        string
	IfName         string
	Netns          string
	Args           [][2]string
	CapabilityArgs map[string]any
	// Config is the configuration list's bytes as they were at ADD.
	Config []byte
	// Result is the final ADD result, in the version it was produced in.
	Result json.RawMessage
}

func (r *Runtime) resultsDir() string { return filepath.Join(r.cacheDir, "results") }

func (r *Runtime) cachePath(network, containerID, ifName string) string {
	return filepath.Join(r.resultsDir(), network+"-"+containerID+"-"+ifName)
}

// writeCache records the final result of a successful ADD of list for att.
func (r *Runtime) writeCache(list *cni.ConfigList, att *Attachment, result *cni.Result) error {
	resultJSON, err := result.Marshal(result.CNIVersion)
	if err != nil {
		return err
	}
	entry := cacheEntryOut{
		Kind:           cacheKind,
		ContainerID:    att.ContainerID,
		Config:         list.Bytes,
		IfName:         att.IfName,
		NetworkName:    list.Name,
		Netns:          att.Netns,
		CNIArgs:        att.Args,
		CapabilityArgs: att.CapabilityArgs,
	}
	if err := json.Unmarshal(resultJSON, &entry.Result); err != nil {
		return err
	}
	data, err := json.Marshal(&entry)
	if err != nil {
		return err
	}
	return writeFileAtomic(r.cachePath(list.Name, att.ContainerID, att.IfName), data)
}

// writeFileAtomic replaces path with data (mode 0600) so that readers see the
// old content or the new, never a mix.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // CreateTemp makes it 0600
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	_, err = tmp.Write(data)
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// removeCache deletes the entry of (network, containerID, ifName); a missing
// entry is not an error.
func (r *Runtime) removeCache(network, containerID, ifName string) error {
	err := os.Remove(r.cachePath(network, containerID, ifName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// readCachedResult returns the cached final result of (network, att) converted
// to version, or (nil, nil) when there is no entry. An entry in the current
// format and a legacy file holding a bare result are both read.
func (r *Runtime) readCachedResult(network, version string, att *Attachment) (*cni.Result, error) {
	data, err := os.ReadFile(r.cachePath(network, att.ContainerID, att.IfName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, cni.Errorf(cni.CodeIOFailure, "reading cached result: %v", err)
	}
	raw := data // a legacy entry is the bare result
	var entry cacheEntryIn
	if json.Unmarshal(data, &entry) == nil && entry.Kind == cacheKind {
		raw = entry.Result
	}
	if len(raw) == 0 || string(raw) == "null" {
		return nil, cni.Errorf(cni.CodeDecodingFailure, "cached entry for network %q has no result", network)
	}
	result, err := cni.ParseResult(raw, version)
	if err != nil {
		return nil, cni.Errorf(cni.CodeOf(err), "decoding cached result: %v", err)
	}
	converted, err := result.Convert(version)
	if err != nil {
		return nil, cni.Errorf(cni.CodeOf(err), "failed to convert cached result to config version %q: %v", version, err)
	}
	return converted, nil
}

// CachedResult returns the final result of the last successful ADD of list for
// att, converted to the list's version; (nil, nil) when there is none.
func (r *Runtime) CachedResult(list *cni.ConfigList, att *Attachment) (*cni.Result, error) {
	if err := validateAttachment(list, att); err != nil {
		return nil, err
	}
	return r.readCachedResult(list.Name, list.CNIVersion, att)
}

// CachedAttachments lists the cached attachments of containerID, or of every
// container when containerID is "", sorted by cache file name (network, then
// container, then interface). Entries that are unreadable, of another format,
// or lack a network or interface name are skipped; a missing cache gives none.
func (r *Runtime) CachedAttachments(containerID string) ([]*CachedAttachment, error) {
	dirEntries, err := os.ReadDir(r.resultsDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(dirEntries))
	for _, e := range dirEntries {
		if !e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var out []*CachedAttachment
	for _, name := range names {
		if containerID != "" {
			// The network name comes first and the interface name last, neither empty.
			infix := "-" + containerID + "-"
			if pos := strings.Index(name, infix); pos <= 0 || pos+len(infix) >= len(name) {
				continue
			}
		}
		data, err := os.ReadFile(filepath.Join(r.resultsDir(), name))
		if err != nil {
			continue
		}
		var entry cacheEntryIn
		if json.Unmarshal(data, &entry) != nil || entry.Kind != cacheKind {
			continue
		}
		if (containerID != "" && entry.ContainerID != containerID) || entry.IfName == "" || entry.NetworkName == "" {
			continue
		}
		out = append(out, &CachedAttachment{
			ContainerID:    entry.ContainerID,
			Network:        entry.NetworkName,
			IfName:         entry.IfName,
			Netns:          entry.Netns,
			Args:           entry.CNIArgs,
			CapabilityArgs: entry.CapabilityArgs,
			Config:         entry.Config,
			Result:         entry.Result,
		})
	}
	return out, nil
}

// validateAttachment checks what becomes a file name (cache entry, lock) or an
// environment variable before anything runs: a container ID (code 3 when
// empty, 4 when malformed), the network name (7) and the interface name (4).
func validateAttachment(list *cni.ConfigList, att *Attachment) error {
	if list == nil {
		return cni.Errorf(cni.CodeInvalidNetworkConfig, "no network configuration given")
	}
	if att == nil {
		return cni.Errorf(cni.CodeInvalidEnvironment, "no attachment given")
	}
	if err := cni.ValidateContainerID(att.ContainerID); err != nil {
		return err
	}
	if err := cni.ValidateNetworkName(list.Name); err != nil {
		return err
	}
	if err := cni.ValidateInterfaceName(att.IfName); err != nil {
		return err
	}
	return nil
}

// errNoPlugins reports a list that cannot run.
func errNoPlugins(list *cni.ConfigList) error {
	return cni.Errorf(cni.CodeInvalidNetworkConfig, "network %q has no plugins", list.Name)
}
