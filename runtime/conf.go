package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/cnikit/cnikit/cni"
)

// Loading network configurations from a directory (usually /etc/cni/net.d),
// with the reference library's rules: .conflist files first, in lexical order,
// the first whose name matches winning; then the deprecated single-plugin .conf
// and .json files, turned into one-plugin lists. A list may be completed by
// plugin objects in <dir>/<network name>/*.conf (spec: loadOnlyInlinedPlugins).

// NotFoundError reports that no configuration in Dir has the name Name.
type NotFoundError struct {
	Dir  string
	Name string
}

// Error reads like the reference library's message.
func (e *NotFoundError) Error() string {
	return fmt.Sprintf("no net configuration with name %q in %s", e.Name, e.Dir)
}

// Unwrap gives the error its CNI code: 7, invalid network configuration.
func (e *NotFoundError) Unwrap() error {
	return cni.Errorf(cni.CodeInvalidNetworkConfig, "%s", e.Error())
}

// NoConfigsError reports that Dir holds no configuration file at all.
type NoConfigsError struct {
	Dir string
}

// Error reads like the reference library's message.
func (e *NoConfigsError) Error() string {
	return fmt.Sprintf("no net configurations found in %s", e.Dir)
}

// Unwrap gives the error its CNI code: 7, invalid network configuration.
func (e *NoConfigsError) Unwrap() error {
	return cni.Errorf(cni.CodeInvalidNetworkConfig, "%s", e.Error())
}

// ConfFiles returns the files (not directories) in dir whose extension
// (".conflist", ".conf", ...) is one of exts, in lexical order. A missing dir
// gives (nil, nil).
func ConfFiles(dir string, exts ...string) ([]string, error) {
	entries, err := os.ReadDir(dir) // sorted by name
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		ext := filepath.Ext(e.Name())
		for _, want := range exts {
			if ext == want {
				files = append(files, filepath.Join(dir, e.Name()))
				break
			}
		}
	}
	return files, nil
}

// LoadListFile loads one configuration file. A .conflist file is a list,
// completed, unless it sets loadOnlyInlinedPlugins, by the plugin objects in
// the .conf files of the folder named after the network beside it; a list
// without any plugin is an error. Any other file (.conf, .json) holds one
// plugin object with its own name and cniVersion, turned into a one-plugin
// list.
func LoadListFile(path string) (*cni.ConfigList, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, cni.Errorf(cni.CodeIOFailure, "error reading %s: %v", path, err)
	}
	if filepath.Ext(path) != ".conflist" {
		p, err := cni.ParsePluginConfig(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		list, err := cni.ConfigListFromPlugin(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return list, nil
	}
	list, err := cni.ParseConfigList(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// A name unfit for a path cannot own a plugin folder (nor be run: ADD
	// refuses it), so no folder is read for it.
	if !list.LoadOnlyInlinedPlugins && cni.ValidateNetworkName(list.Name) == nil {
		extra, err := loadPluginFolder(filepath.Join(filepath.Dir(path), list.Name))
		if err != nil {
			return nil, err
		}
		list.Plugins = append(list.Plugins, extra...)
	}
	if len(list.Plugins) == 0 {
		return nil, cni.Errorf(cni.CodeInvalidNetworkConfig, "%s: no plugin configs found", path)
	}
	return list, nil
}

// loadPluginFolder reads the plugin objects of folder/*.conf, in lexical order.
func loadPluginFolder(folder string) ([]*cni.PluginConfig, error) {
	files, err := ConfFiles(folder, ".conf")
	if err != nil {
		return nil, cni.Errorf(cni.CodeIOFailure, "failed to read plugin config files in %s: %v", folder, err)
	}
	var plugins []*cni.PluginConfig
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, cni.Errorf(cni.CodeIOFailure, "error reading %s: %v", f, err)
		}
		p, err := cni.ParsePluginConfig(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		plugins = append(plugins, p)
	}
	return plugins, nil
}

// LoadList finds the network called name in dir: the first .conflist file (in
// lexical order) with that name, else the first .conf or .json file. A file
// that fails to load before the match is found fails the search, as in the
// reference library. It returns *NoConfigsError when dir holds no
// configuration and *NotFoundError when none has that name.
func LoadList(dir, name string) (*cni.ConfigList, error) {
	lists, err := ConfFiles(dir, ".conflist")
	if err != nil {
		return nil, err
	}
	for _, f := range lists {
		list, err := LoadListFile(f)
		if err != nil {
			return nil, err
		}
		if list.Name == name {
			return list, nil
		}
	}
	singles, err := ConfFiles(dir, ".conf", ".json")
	if err != nil {
		return nil, err
	}
	if len(lists) == 0 && len(singles) == 0 {
		return nil, &NoConfigsError{Dir: dir}
	}
	for _, f := range singles {
		p, err := loadSingle(f)
		if err != nil {
			return nil, err
		}
		if p.Network.Name == name {
			list, err := cni.ConfigListFromPlugin(p)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			return list, nil
		}
	}
	return nil, &NotFoundError{Dir: dir, Name: name}
}

func loadSingle(path string) (*cni.PluginConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, cni.Errorf(cni.CodeIOFailure, "error reading %s: %v", path, err)
	}
	p, err := cni.ParsePluginConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// LoadAll loads every valid network configuration in dir, for listings. Files
// that fail to load are left out. When several files name the same network,
// the one LoadList would pick is kept. The lists are in lexical order of the
// files they come from.
func LoadAll(dir string) ([]*cni.ConfigList, error) {
	lists, err := ConfFiles(dir, ".conflist")
	if err != nil {
		return nil, err
	}
	singles, err := ConfFiles(dir, ".conf", ".json")
	if err != nil {
		return nil, err
	}
	type loaded struct {
		file string
		list *cni.ConfigList
	}
	var kept []loaded
	seen := map[string]bool{}
	for _, f := range append(lists, singles...) { // LoadList's order of preference
		list, err := LoadListFile(f)
		if err != nil || seen[list.Name] {
			continue
		}
		seen[list.Name] = true
		kept = append(kept, loaded{f, list})
	}
	sort.SliceStable(kept, func(i, j int) bool { return kept[i].file < kept[j].file })
	var out []*cni.ConfigList
	for _, k := range kept {
		out = append(out, k.list)
	}
	return out, nil
}
