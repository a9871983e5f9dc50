package cni

import (
	"fmt"
	"strconv"
	"strings"
)

// SpecVersion is the newest version of the specification this library implements.
const SpecVersion = "1.1.0"

// AllVersions lists every spec version whose results this library reads and writes,
// oldest first.
var AllVersions = []string{"0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// Version is a parsed spec version. Only major, minor and patch are meaningful.
type Version struct {
	Major, Minor, Patch int
}

// ParseVersion parses "X", "X.Y" or "X.Y.Z", each part a decimal number. The
// empty string means 0.1.0, the version of configurations written before
// cniVersion existed.
func ParseVersion(s string) (Version, error) {
	if s == "" {
		return Version{0, 1, 0}, nil
	}
	parts := strings.Split(s, ".")
	if len(parts) > 3 {
		return Version{}, fmt.Errorf("invalid version %q: too many parts", s)
	}
	var nums [3]int
	for i, p := range parts {
		if p == "" || strings.TrimLeft(p, "0123456789") != "" {
			return Version{}, fmt.Errorf("invalid version %q: %q is not a number", s, p)
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return Version{}, fmt.Errorf("invalid version %q: %q is out of range", s, p)
		}
		nums[i] = n
	}
	return Version{nums[0], nums[1], nums[2]}, nil
}

// String formats the version as "X.Y.Z".
func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Compare returns -1, 0 or +1 as v is older than, equal to or newer than o.
func (v Version) Compare(o Version) int {
	for _, d := range [3]int{v.Major - o.Major, v.Minor - o.Minor, v.Patch - o.Patch} {
		if d < 0 {
			return -1
		}
		if d > 0 {
			return 1
		}
	}
	return 0
}

// VersionAtLeast reports whether version v is at least min. An unparseable v is
// reported as an error.
func VersionAtLeast(v, min string) (bool, error) {
	pv, err := ParseVersion(v)
	if err != nil {
		return false, err
	}
	pm, err := ParseVersion(min)
	if err != nil {
		return false, err
	}
	return pv.Compare(pm) >= 0, nil
}

// mustAtLeast is VersionAtLeast for versions already known to parse.
func mustAtLeast(v, min string) bool {
	ok, err := VersionAtLeast(v, min)
	return err == nil && ok
}

// SupportsCheck reports whether configurations of version v allow CHECK (0.4.0+).
func SupportsCheck(v string) bool { return mustAtLeast(v, "0.4.0") }

// SupportsGCAndStatus reports whether configurations of version v allow GC and
// STATUS (1.1.0+).
func SupportsGCAndStatus(v string) bool { return mustAtLeast(v, "1.1.0") }

// SupportsPrevResultOnDel reports whether DEL carries prevResult at version v
// (0.4.0+).
func SupportsPrevResultOnDel(v string) bool { return mustAtLeast(v, "0.4.0") }

// SelectVersion picks the version a runtime uses for a configuration list: the
// highest of cniVersion and cniVersions that this library supports. Entries newer
// than SpecVersion are dropped; any unparseable entry is an error. Without
// cniVersions, cniVersion is used as written; when every candidate is too new,
// cniVersion is kept too, so that plugins refuse it with a clear code 1.
func SelectVersion(cniVersion string, cniVersions []string) (string, error) {
	if cniVersion != "" {
		if _, err := ParseVersion(cniVersion); err != nil {
			return "", err
		}
	}
	if cniVersions == nil {
		return cniVersion, nil
	}
	current, _ := ParseVersion(SpecVersion)
	best, bestStr := Version{}, ""
	candidates := append([]string{}, cniVersions...)
	if cniVersion != "" {
		candidates = append(candidates, cniVersion)
	}
	for _, c := range candidates {
		v, err := ParseVersion(c)
		if err != nil {
			return "", err
		}
		if c == "" || v.Compare(current) > 0 {
			continue
		}
		if bestStr == "" || v.Compare(best) > 0 {
			best, bestStr = v, c
		}
	}
	if bestStr == "" {
		return cniVersion, nil
	}
	return bestStr, nil
}

// Reconcile checks that a plugin supporting the given versions can serve a request
// of version requested, with the spec's error for when it cannot (code 1).
func Reconcile(requested string, supported []string) *Error {
	for _, s := range supported {
		if s == requested {
			return nil
		}
	}
	return &Error{
		Code:    CodeIncompatibleVersion,
		Msg:     "incompatible CNI versions",
		Details: fmt.Sprintf("config is %q, plugin supports %s", requested, quoteList(supported)),
	}
}

func quoteList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, " ") + "]"
}

// VersionsFrom returns the supported versions from min on, for plugins that refuse
// older ones.
func VersionsFrom(min string) []string {
	var out []string
	for _, v := range AllVersions {
		if mustAtLeast(v, min) {
			out = append(out, v)
		}
	}
	return out
}

// PluginInfo is what a plugin answers to VERSION.
type PluginInfo struct {
	CNIVersion        string   `json:"cniVersion"`
	SupportedVersions []string `json:"supportedVersions,omitempty"`
}

// ParsePluginInfo decodes a VERSION answer with the spec's rules: an answer from a
// 0.1.0/0.2.0 plugin may omit supportedVersions.
func ParsePluginInfo(data []byte) (*PluginInfo, error) {
	var info PluginInfo
	if err := jsonUnmarshal(data, &info); err != nil {
		return nil, Errorf(CodeDecodingFailure, "decoding version info: %v", err)
	}
	if info.CNIVersion == "" {
		return nil, Errorf(CodeDecodingFailure, "decoding version info: missing field cniVersion")
	}
	if len(info.SupportedVersions) == 0 {
		if info.CNIVersion != "0.2.0" {
			return nil, Errorf(CodeDecodingFailure, "decoding version info: missing field supportedVersions")
		}
		info.SupportedVersions = []string{"0.1.0", "0.2.0"}
	}
	return &info, nil
}
