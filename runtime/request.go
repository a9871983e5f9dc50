package runtime

import (
	"encoding/json"

	"github.com/cnikit/cnikit/cni"
)

// request is what, besides the plugin object, shapes one plugin's stdin.
type request struct {
	verb           string // ADD, CHECK, DEL, GC or STATUS
	capabilityArgs map[string]any
	prevResult     []byte // ADD (after the first plugin), CHECK, DEL; nil for none
	valid          []cni.GCAttachment
}

// requestConfig derives a plugin's stdin from its object in list (spec §3,
// "Deriving execution configuration"). The object's bytes are edited in place:
// keys the spec does not touch reach the plugin byte for byte, in their order.
//
//   - Every verb gets the list's name and cniVersion.
//   - ADD, CHECK and DEL get runtimeConfig holding only the capability
//     arguments the plugin declares and the caller supplied (no key when there
//     are none), prevResult when there is one (and none otherwise, whatever the
//     file says), and lose capabilities, which the spec says the runtime removes
//     (the reference library leaves it in).
//   - GC gets the attachments to keep under cni.dev/valid-attachments and,
//     for plugins written to the first 1.1.0 text, under cni.dev/attachments.
//   - STATUS gets nothing more.
func requestConfig(list *cni.ConfigList, plugin *cni.PluginConfig, req request) ([]byte, error) {
	obj, err := cni.ParseObject(plugin.Bytes)
	if err != nil {
		return nil, err
	}
	if err := obj.Set("name", list.Name); err != nil {
		return nil, err
	}
	if err := obj.Set("cniVersion", list.CNIVersion); err != nil {
		return nil, err
	}
	switch req.verb {
	case "ADD", "CHECK", "DEL":
		if rc := runtimeConfig(plugin.Network.Capabilities, req.capabilityArgs); len(rc) > 0 {
			if err := obj.Set("runtimeConfig", rc); err != nil {
				return nil, cni.Errorf(cni.CodeInvalidNetworkConfig, "capability arguments for plugin %q: %v", plugin.Network.Type, err)
			}
		}
		if req.prevResult != nil {
			obj.SetRaw("prevResult", json.RawMessage(req.prevResult))
		} else {
			obj.Delete("prevResult")
		}
		obj.Delete("capabilities")
	case "GC":
		valid := req.valid
		if valid == nil {
			valid = []cni.GCAttachment{} // "keep nothing" is [], never null
		}
		if err := obj.Set("cni.dev/valid-attachments", valid); err != nil {
			return nil, err
		}
		if err := obj.Set("cni.dev/attachments", valid); err != nil {
			return nil, err
		}
	}
	return obj.Bytes(), nil
}

// runtimeConfig returns the capability arguments a plugin declaring
// capabilities may see.
func runtimeConfig(capabilities map[string]bool, args map[string]any) map[string]any {
	rc := map[string]any{}
	for name, declared := range capabilities {
		if v, supplied := args[name]; declared && supplied {
			rc[name] = v
		}
	}
	return rc
}
