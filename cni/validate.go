package cni

import (
	"strings"
	"unicode"
)

// namePattern is what container IDs, network names and plugin types must match:
// a letter or digit, then letters, digits, '_', '.' and '-'. It keeps all three
// safe to use as path components. It is checked by isName rather than a
// compiled regexp: every plugin execution would pay the compilation at start.
const namePattern = `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`

// isName reports whether s matches namePattern.
func isName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return s != ""
}

// MaxInterfaceNameLen is the kernel's IFNAMSIZ minus the terminating NUL.
const MaxInterfaceNameLen = 15

// ValidateContainerID checks a container ID: empty is code 3, bad characters
// code 4.
func ValidateContainerID(id string) *Error {
	if id == "" {
		return Errorf(CodeUnknownContainer, "missing containerID")
	}
	if !isName(id) {
		return Errorf(CodeInvalidEnvironment, "invalid characters in containerID %q", id).
			WithDetails("a container ID must match " + namePattern)
	}
	return nil
}

// ValidateNetworkName checks a network name (code 7).
func ValidateNetworkName(name string) *Error {
	if name == "" {
		return Errorf(CodeInvalidNetworkConfig, "missing network name")
	}
	if !isName(name) {
		return Errorf(CodeInvalidNetworkConfig, "invalid characters found in network name %q", name).
			WithDetails("a network name must match " + namePattern)
	}
	return nil
}

// ValidateInterfaceName checks an interface name the kernel would accept: not
// empty, at most 15 bytes, not "." or "..", no '/', ':' or whitespace (code 4).
func ValidateInterfaceName(name string) *Error {
	switch {
	case name == "":
		return Errorf(CodeInvalidEnvironment, "interface name is empty")
	case len(name) > MaxInterfaceNameLen:
		return Errorf(CodeInvalidEnvironment, "interface name %q is too long (%d bytes, at most %d)", name, len(name), MaxInterfaceNameLen)
	case name == "." || name == "..":
		return Errorf(CodeInvalidEnvironment, "interface name %q is . or ..", name)
	}
	for _, r := range name {
		if r == '/' || r == ':' || unicode.IsSpace(r) {
			return Errorf(CodeInvalidEnvironment, "interface name %q contains %q: / : and whitespace are not allowed", name, r)
		}
	}
	return nil
}

// ValidatePluginType checks a plugin type (a binary name): a bare name, never a
// path, so that a configuration cannot make the runtime execute a file outside
// CNI_PATH (the CVE-2021-20206 class). Code 7.
func ValidatePluginType(t string) *Error {
	if t == "" {
		return Errorf(CodeInvalidNetworkConfig, "missing plugin type")
	}
	if strings.ContainsAny(t, `/\`) || !isName(t) {
		return Errorf(CodeInvalidNetworkConfig, "invalid plugin type %q: it must be a bare binary name matching %s", t, namePattern)
	}
	return nil
}
