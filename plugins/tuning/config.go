package tuning

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/link"
	"github.com/cnikit/cnikit/internal/rundir"
	"github.com/cnikit/cnikit/skel"
)

// defaultAllowlist is the reference plugin's sysctl allowlist file.
const defaultAllowlist = "/etc/cni/tuning/allowlist.conf"

// AllowlistEnv names the environment variable that, when set, replaces the
// allowlist file's path. It is read from the plugin's environment, which the
// runtime (not a network configuration's author) controls; tests point it at
// a temporary file.
const AllowlistEnv = "CNIKIT_TUNING_ALLOWLIST"

// maxAlias is the longest interface alias the kernel keeps (IFALIASZ - 1).
const maxAlias = 255

// conf is the tuning plugin's configuration; README.md lists every key.
type conf struct {
	cni.PluginConf
	DataDir  string   `json:"dataDir"`
	SysCtl   sysctls  `json:"sysctl"`
	Mac      string   `json:"mac"`
	Promisc  bool     `json:"promisc"`
	Mtu      int      `json:"mtu"`
	TxQLen   *int     `json:"txQLen"`
	Allmulti *bool    `json:"allmulti"`
	Alias    *string  `json:"alias"`
	Args     argsConf `json:"args"`

	RuntimeConfig struct {
		Mac string `json:"mac"`
	} `json:"runtimeConfig"`

	// Derived by parse.
	mac     net.HardwareAddr
	sysctls []sysctlSetting
}

// argsConf is the args object; only its cni member matters here.
type argsConf struct {
	Cni overrides `json:"cni"`
}

// overrides are the args.cni keys, which beat the top-level ones.
type overrides struct {
	SysCtl   sysctls `json:"sysctl"`
	Mac      *string `json:"mac"`
	Promisc  *bool   `json:"promisc"`
	Mtu      *int    `json:"mtu"`
	TxQLen   *int    `json:"txQLen"`
	Allmulti *bool   `json:"allmulti"`
	Alias    *string `json:"alias"`
}

// macArgs is the CNI_ARGS the plugin reads.
type macArgs struct {
	cni.CommonArgs
	MAC string
}

// sysctls is a sysctl object in document order. Unlike a Go map it keeps the
// order the settings are written in, and refuses a key given twice (as the
// reference does).
type sysctls []sysctlEntry

type sysctlEntry struct{ key, value string }

// UnmarshalJSON reads an object of string (or number) values.
func (s *sysctls) UnmarshalJSON(data []byte) error {
	if string(bytes.TrimSpace(data)) == "null" {
		*s = nil
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return &sysctlValueError{"sysctl must be an object of strings"}
	}
	seen := map[string]bool{}
	out := sysctls{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key := tok.(string)
		if seen[key] {
			return &sysctlValueError{fmt.Sprintf("sysctl %q is given twice", key)}
		}
		seen[key] = true
		var value any
		if err := dec.Decode(&value); err != nil {
			return err
		}
		switch v := value.(type) {
		case string:
			out = append(out, sysctlEntry{key, v})
		case json.Number:
			out = append(out, sysctlEntry{key, v.String()})
		default:
			return &sysctlValueError{fmt.Sprintf("sysctl %q: value %v is not a string", key, value)}
		}
	}
	*s = out
	return nil
}

// sysctlValueError is a well-formed sysctl object with a bad key or value.
type sysctlValueError struct{ msg string }

func (e *sysctlValueError) Error() string { return e.msg }

func invalid(format string, a ...any) error {
	return cni.Errorf(cni.CodeInvalidNetworkConfig, "tuning: "+format, a...)
}

// decode reads the configuration without judging its values: enough for DEL
// and GC, which only need the data directory and the network name.
func decode(args *skel.Args) (*conf, error) {
	c := &conf{}
	if err := json.Unmarshal(args.StdinData, c); err != nil {
		var typeErr *json.UnmarshalTypeError
		var sysctlErr *sysctlValueError
		if errors.As(err, &sysctlErr) {
			return nil, invalid("%v", sysctlErr)
		}
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return nil, invalid("%s: %s is not a valid value (want %s)", typeErr.Field, typeErr.Value, typeErr.Type)
		}
		return nil, cni.Errorf(cni.CodeDecodingFailure, "tuning: decoding configuration: %v", err)
	}
	c.CNIVersion = args.Version
	if c.DataDir == "" {
		// Where the reference plugin keeps its backups: /run/cni/tuning.
		c.DataDir = rundir.Plugin("tuning")
	}
	if !filepath.IsAbs(c.DataDir) {
		return nil, invalid("dataDir %q is not an absolute path", c.DataDir)
	}
	c.DataDir = filepath.Clean(c.DataDir)
	return c, nil
}

// parse decodes and checks the whole configuration for ADD and CHECK; every
// error names the key and its value, and nothing has been changed yet.
func parse(args *skel.Args) (*conf, error) {
	c, err := decode(args)
	if err != nil {
		return nil, err
	}
	if err := c.ParsePrevResult(); err != nil {
		return nil, err
	}
	if err := c.applyOverrides(args.CNIArgs); err != nil {
		return nil, err
	}
	if c.Mtu < 0 || c.Mtu > 65535 {
		return nil, invalid("mtu %d is out of range (0-65535)", c.Mtu)
	}
	if c.TxQLen != nil && (*c.TxQLen < 0 || *c.TxQLen > math.MaxInt32) {
		return nil, invalid("txQLen %d is out of range (0-%d)", *c.TxQLen, math.MaxInt32)
	}
	if c.Alias != nil {
		if len(*c.Alias) > maxAlias {
			return nil, invalid("alias %q is longer than %d bytes", *c.Alias, maxAlias)
		}
		if strings.ContainsRune(*c.Alias, 0) {
			return nil, invalid("alias %q contains a NUL byte", *c.Alias)
		}
	}
	allow, allowFile, err := readAllowlist()
	if err != nil {
		return nil, err
	}
	seen := map[string]string{}
	for _, e := range c.SysCtl {
		s, err := resolveSysctlKey(e.key, args.IfName)
		if err != nil {
			return nil, invalid("sysctl %q: %v", e.key, err)
		}
		if allow != nil && !allow.allows(e.key) {
			return nil, invalid("sysctl %q is not allowed by %s", e.key, allowFile)
		}
		if other, dup := seen[s]; dup {
			return nil, invalid("sysctl %q and %q name the same setting", other, e.key)
		}
		seen[s] = e.key
		c.sysctls = append(c.sysctls, sysctlSetting{key: e.key, path: s, value: e.value})
	}
	return c, nil
}

// applyOverrides folds in the weaker and stronger sources of each setting:
// CNI_ARGS MAC < runtimeConfig.mac < mac... < args.cni.*, as the reference
// orders them (args.cni's sysctls are merged into sysctl).
func (c *conf) applyOverrides(cniArgs string) error {
	var env macArgs
	if cniArgs != "" {
		if err := cni.LoadArgs(cniArgs, &env); err != nil {
			return err
		}
	}
	type macSource struct{ key, value string }
	sources := []macSource{{"mac", c.Mac}}
	if env.MAC != "" {
		sources = append(sources, macSource{"CNI_ARGS MAC", env.MAC})
	}
	if c.RuntimeConfig.Mac != "" {
		sources = append(sources, macSource{"runtimeConfig.mac", c.RuntimeConfig.Mac})
	}
	o := c.Args.Cni
	if o.Mac != nil {
		sources = append(sources, macSource{"args.cni.mac", *o.Mac})
	}
	winner := sources[len(sources)-1]
	c.Mac = winner.value
	if c.Mac != "" {
		mac, err := net.ParseMAC(c.Mac)
		if err != nil {
			code := cni.CodeInvalidNetworkConfig
			if winner.key == "CNI_ARGS MAC" {
				code = cni.CodeInvalidEnvironment
			}
			return cni.Errorf(code, "tuning: %s %q is not a valid hardware address", winner.key, c.Mac)
		}
		c.mac = mac
	}
	if o.Promisc != nil {
		c.Promisc = *o.Promisc
	}
	if o.Mtu != nil {
		c.Mtu = *o.Mtu
	}
	if o.TxQLen != nil {
		c.TxQLen = o.TxQLen
	}
	if o.Allmulti != nil {
		c.Allmulti = o.Allmulti
	}
	if o.Alias != nil {
		c.Alias = o.Alias
	}
	for _, e := range o.SysCtl {
		replaced := false
		for i := range c.SysCtl {
			if c.SysCtl[i].key == e.key {
				c.SysCtl[i].value, replaced = e.value, true
			}
		}
		if !replaced {
			c.SysCtl = append(c.SysCtl, e)
		}
	}
	return nil
}

// attributes are the interface settings the configuration asks for.
func (c *conf) attributes() link.Attributes {
	a := link.Attributes{MAC: c.mac, MTU: c.Mtu, TxQLen: c.TxQLen, Allmulti: c.Allmulti, Alias: c.Alias}
	if c.Promisc {
		// promisc only ever switches the mode on, as in the reference.
		on := true
		a.Promisc = &on
	}
	return a
}

// allowlist is the administrator's list of sysctl key patterns.
type allowlist []*regexp.Regexp

// allows reports whether key matches a pattern. Patterns are not anchored
// (as in the reference): write ^...$ to match a whole key.
func (a allowlist) allows(key string) bool {
	for _, re := range a {
		if re.MatchString(key) {
			return true
		}
	}
	return false
}

// allowlistPath is the allowlist file in use.
func allowlistPath() string {
	if p := os.Getenv(AllowlistEnv); p != "" {
		return p
	}
	return defaultAllowlist
}

// readAllowlist reads the allowlist file, one regular expression per line
// (blank lines ignored). No file means no restriction (nil list).
func readAllowlist() (allowlist, string, error) {
	path := allowlistPath()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, path, nil
	}
	if err != nil {
		return nil, path, cni.Errorf(cni.CodeIOFailure, "tuning: reading sysctl allowlist: %v", err)
	}
	defer f.Close()
	list := allowlist{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		re, err := regexp.Compile(line)
		if err != nil {
			return nil, path, cni.Errorf(cni.CodeIOFailure, "tuning: sysctl allowlist %s line %d: %v", path, n, err)
		}
		list = append(list, re)
	}
	if err := sc.Err(); err != nil {
		return nil, path, cni.Errorf(cni.CodeIOFailure, "tuning: reading sysctl allowlist %s: %v", path, err)
	}
	return list, path, nil
}
