package cni

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// PluginConf holds the keys of a plugin object that the spec defines. Plugins
// embed it in their own configuration type.
type PluginConf struct {
	CNIVersion   string          `json:"cniVersion,omitempty"`
	Name         string          `json:"name,omitempty"`
	Type         string          `json:"type,omitempty"`
	Capabilities map[string]bool `json:"capabilities,omitempty"`
	IPAM         IPAM            `json:"ipam,omitempty"`
	DNS          DNS             `json:"dns,omitempty"`

	RawPrevResult json.RawMessage `json:"prevResult,omitempty"`
	// PrevResult is RawPrevResult decoded by ParsePrevResult.
	PrevResult *Result `json:"-"`

	// ValidAttachments is the GC request's list of attachments to keep. GC requests
	// of the original 1.1.0 text named it cni.dev/attachments; see GCValidAttachments.
	ValidAttachments  []GCAttachment `json:"cni.dev/valid-attachments,omitempty"`
	LegacyAttachments []GCAttachment `json:"cni.dev/attachments,omitempty"`
}

// IPAM is the ipam section of a plugin object; only type is common to all.
type IPAM struct {
	Type string `json:"type,omitempty"`
}

// GCAttachment names one attachment still in use, in a GC request.
type GCAttachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
}

// GCValidAttachments returns the attachments a GC request asks to keep,
// preferring the current key over the older one.
func (c *PluginConf) GCValidAttachments() []GCAttachment {
	if c.ValidAttachments != nil {
		return c.ValidAttachments
	}
	return c.LegacyAttachments
}

// ParsePrevResult decodes RawPrevResult into PrevResult; a prevResult without
// cniVersion is read as the configuration's version. It is a no-op without one.
func (c *PluginConf) ParsePrevResult() error {
	if len(c.RawPrevResult) == 0 || string(c.RawPrevResult) == "null" {
		return nil
	}
	r, err := ParseResult(c.RawPrevResult, c.CNIVersion)
	if err != nil {
		return Errorf(CodeDecodingFailure, "could not parse prevResult: %v", err)
	}
	c.PrevResult = r
	return nil
}

// PluginConfig is a plugin object as found in a configuration list: its decoded
// common keys and its raw bytes, which stay authoritative (unknown keys are
// handed on to the plugin unchanged).
type PluginConfig struct {
	Network PluginConf
	Bytes   []byte
}

// ConfigList is a network configuration list (a .conflist file, or a legacy
// single-plugin .conf converted to a list).
type ConfigList struct {
	CNIVersion             string
	CNIVersions            []string
	Name                   string
	DisableCheck           bool
	DisableGC              bool
	LoadOnlyInlinedPlugins bool
	Plugins                []*PluginConfig
	Bytes                  []byte
}

// flexBool accepts a JSON bool or the strings "true"/"false" in any case.
type flexBool bool

func (b *flexBool) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	switch t := v.(type) {
	case bool:
		*b = flexBool(t)
		return nil
	case string:
		switch strings.ToLower(t) {
		case "true":
			*b = true
			return nil
		case "false":
			*b = false
			return nil
		}
	}
	return fmt.Errorf("%s is not a boolean", data)
}

// ParsePluginConfig decodes one plugin object; type is required.
func ParsePluginConfig(data []byte) (*PluginConfig, error) {
	p := &PluginConfig{Bytes: data}
	if err := json.Unmarshal(data, &p.Network); err != nil {
		return nil, Errorf(CodeDecodingFailure, "error parsing plugin configuration: %v", err)
	}
	if p.Network.Type == "" {
		return nil, Errorf(CodeInvalidNetworkConfig, "error parsing plugin configuration: missing 'type'")
	}
	return p, nil
}

// ParseConfigList decodes a configuration list and selects its version: the
// highest of cniVersion and cniVersions this library supports. Plugins from a
// sibling folder are added by the runtime's loader, not here, so a list without
// plugins is accepted unless loadOnlyInlinedPlugins says none can come.
func ParseConfigList(data []byte) (*ConfigList, error) {
	var raw struct {
		CNIVersion             string             `json:"cniVersion"`
		CNIVersions            []string           `json:"cniVersions"`
		Name                   *json.RawMessage   `json:"name"`
		DisableCheck           flexBool           `json:"disableCheck"`
		DisableGC              flexBool           `json:"disableGC"`
		LoadOnlyInlinedPlugins flexBool           `json:"loadOnlyInlinedPlugins"`
		Plugins                *[]json.RawMessage `json:"plugins"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, Errorf(CodeDecodingFailure, "error parsing configuration list: %v", err)
	}
	if raw.Name == nil {
		return nil, Errorf(CodeInvalidNetworkConfig, "error parsing configuration list: no name")
	}
	var name string
	if err := json.Unmarshal(*raw.Name, &name); err != nil {
		return nil, Errorf(CodeInvalidNetworkConfig, "error parsing configuration list: invalid name type %s", *raw.Name)
	}
	version, err := SelectVersion(raw.CNIVersion, raw.CNIVersions)
	if err != nil {
		return nil, Errorf(CodeInvalidNetworkConfig, "error parsing configuration list: %v", err)
	}
	list := &ConfigList{
		CNIVersion:             version,
		CNIVersions:            raw.CNIVersions,
		Name:                   name,
		DisableCheck:           bool(raw.DisableCheck),
		DisableGC:              bool(raw.DisableGC),
		LoadOnlyInlinedPlugins: bool(raw.LoadOnlyInlinedPlugins),
		Bytes:                  data,
	}
	if raw.Plugins == nil {
		if list.LoadOnlyInlinedPlugins {
			return nil, Errorf(CodeInvalidNetworkConfig, "error parsing configuration list: loadOnlyInlinedPlugins is true but there is no plugins key")
		}
		return list, nil
	}
	if len(*raw.Plugins) == 0 {
		return nil, Errorf(CodeInvalidNetworkConfig, "error parsing configuration list: no plugins in list")
	}
	for i, rawPlugin := range *raw.Plugins {
		p, err := ParsePluginConfig(compactCopy(rawPlugin))
		if err != nil {
			return nil, Errorf(CodeOf(err), "error parsing configuration list: plugin %d: %v", i, err)
		}
		list.Plugins = append(list.Plugins, p)
	}
	return list, nil
}

// compactCopy copies a raw JSON value so that it no longer aliases the list's
// buffer. It keeps the value's bytes (and thus its unknown keys) as written.
func compactCopy(raw json.RawMessage) []byte {
	return bytes.Clone(raw)
}

// ConfigListFromPlugin wraps a legacy single-plugin configuration (.conf/.json)
// into a list with the same name and version, as the reference loader does.
func ConfigListFromPlugin(p *PluginConfig) (*ConfigList, error) {
	if p.Network.Name == "" {
		return nil, Errorf(CodeInvalidNetworkConfig, "error converting configuration to a list: missing name")
	}
	listBytes, err := json.Marshal(map[string]any{
		"cniVersion": p.Network.CNIVersion,
		"name":       p.Network.Name,
		"plugins":    []json.RawMessage{p.Bytes},
	})
	if err != nil {
		return nil, err
	}
	return &ConfigList{
		CNIVersion: p.Network.CNIVersion,
		Name:       p.Network.Name,
		Plugins:    []*PluginConfig{p},
		Bytes:      listBytes,
	}, nil
}
