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

// parseFlexBool reads a configuration-list boolean: a JSON bool, or the string
// "true" or "false" in any case, as the reference loader accepts (CF12).
func parseFlexBool(key string, data json.RawMessage) (bool, error) {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return false, err
	}
	switch t := v.(type) {
	case bool:
		return t, nil
	case string:
		switch strings.ToLower(t) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	}
	return false, fmt.Errorf("invalid value %s for %s: want true or false", data, key)
}

// ParsePluginConfig decodes one plugin object; type is required. Bytes keeps data
// as given.
func ParsePluginConfig(data []byte) (*PluginConfig, error) {
	if !isJSONObject(data) {
		return nil, Errorf(CodeDecodingFailure, "error parsing plugin configuration: not a JSON object")
	}
	p := &PluginConfig{Bytes: data}
	if err := json.Unmarshal(data, &p.Network); err != nil {
		return nil, Errorf(CodeDecodingFailure, "error parsing plugin configuration: %v", err)
	}
	if p.Network.Type == "" {
		return nil, Errorf(CodeInvalidNetworkConfig, "error parsing plugin configuration: missing 'type'")
	}
	return p, nil
}

// isJSONObject reports whether data is one JSON object (and nothing else).
func isJSONObject(data []byte) bool {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	return len(trimmed) > 0 && trimmed[0] == '{' && json.Valid(data)
}

// ParseConfigList decodes a configuration list and selects its version: the
// highest of cniVersion and cniVersions this library supports (SelectVersion).
// Plugins from a sibling folder are added by the runtime's loader, not here, so
// a list without a plugins key is accepted unless loadOnlyInlinedPlugins says
// none can come. Data that is not a JSON object is code 6; a key of the wrong
// type or with an invalid value is code 7 and the message names it.
func ParseConfigList(data []byte) (*ConfigList, error) {
	fail := func(code Code, format string, args ...any) (*ConfigList, error) {
		return nil, Errorf(code, "error parsing configuration list: "+format, args...)
	}
	if !isJSONObject(data) {
		return fail(CodeDecodingFailure, "not a JSON object")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fail(CodeDecodingFailure, "%v", err)
	}
	list := &ConfigList{Bytes: data}

	rawName, ok := raw["name"]
	if !ok {
		return fail(CodeInvalidNetworkConfig, "no name")
	}
	if err := json.Unmarshal(rawName, &list.Name); err != nil || isNull(rawName) {
		return fail(CodeInvalidNetworkConfig, "invalid name %s: want a string", rawName)
	}
	var cniVersion string
	if v, ok := raw["cniVersion"]; ok {
		if err := json.Unmarshal(v, &cniVersion); err != nil || isNull(v) {
			return fail(CodeInvalidNetworkConfig, "invalid cniVersion %s: want a string", v)
		}
	}
	if v, ok := raw["cniVersions"]; ok {
		if err := json.Unmarshal(v, &list.CNIVersions); err != nil || isNull(v) {
			return fail(CodeInvalidNetworkConfig, "invalid cniVersions %s: want a list of strings", v)
		}
		if list.CNIVersions == nil {
			list.CNIVersions = []string{}
		}
	}
	version, err := SelectVersion(cniVersion, list.CNIVersions)
	if err != nil {
		return fail(CodeInvalidNetworkConfig, "%v", err)
	}
	list.CNIVersion = version

	for _, b := range []struct {
		key string
		dst *bool
	}{
		{"disableCheck", &list.DisableCheck},
		{"disableGC", &list.DisableGC},
		{"loadOnlyInlinedPlugins", &list.LoadOnlyInlinedPlugins},
	} {
		if v, ok := raw[b.key]; ok {
			if *b.dst, err = parseFlexBool(b.key, v); err != nil {
				return fail(CodeInvalidNetworkConfig, "%v", err)
			}
		}
	}

	rawPlugins, ok := raw["plugins"]
	if !ok {
		if list.LoadOnlyInlinedPlugins {
			return fail(CodeInvalidNetworkConfig, "loadOnlyInlinedPlugins is true but there is no plugins key")
		}
		return list, nil
	}
	var plugins []json.RawMessage
	if err := json.Unmarshal(rawPlugins, &plugins); err != nil || isNull(rawPlugins) {
		return fail(CodeInvalidNetworkConfig, "invalid plugins: want a list of plugin objects")
	}
	if len(plugins) == 0 {
		return fail(CodeInvalidNetworkConfig, "no plugins in list")
	}
	for i, rawPlugin := range plugins {
		p, err := ParsePluginConfig(compactCopy(rawPlugin))
		if err != nil {
			return fail(CodeOf(err), "plugin %d: %v", i, err)
		}
		list.Plugins = append(list.Plugins, p)
	}
	return list, nil
}

func isNull(data json.RawMessage) bool { return string(bytes.TrimSpace(data)) == "null" }

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
