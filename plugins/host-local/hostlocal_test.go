package hostlocal

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/ipam"
	"github.com/cnikit/cnikit/internal/plugintest"
)

// request is one in-process invocation of the plugin. host-local never enters
// the namespace, so CNI_NETNS is the test's own with the override set.
type request struct {
	verb, stdin, containerID, ifName, cniArgs, netns string
}

func run(t testing.TB, r request) ([]byte, *cni.Error) {
	t.Helper()
	if r.ifName == "" {
		r.ifName = "eth0"
	}
	if r.netns == "" && r.verb != "DEL" {
		r.netns = "/proc/self/ns/net"
	}
	return plugintest.Invoke(t, plugintest.Call{Plugin: "host-local", Verb: r.verb, ContainerID: r.containerID, Netns: r.netns,
		IfName: r.ifName, CNIArgs: r.cniArgs, Path: "/nonexistent", NetnsOverride: true, Conf: []byte(r.stdin)})
}

func mustAdd(t testing.TB, stdin, containerID string) *cni.Result {
	t.Helper()
	out, err := run(t, request{verb: "ADD", stdin: stdin, containerID: containerID})
	if err != nil {
		t.Fatalf("ADD %s: %v", containerID, err)
	}
	res, perr := cni.ParseResult(out, "")
	if perr != nil {
		t.Fatal(perr)
	}
	return res
}

func mustSucceed(t testing.TB, r request) {
	t.Helper()
	if _, err := run(t, r); err != nil {
		t.Fatalf("%s %s: %v", r.verb, r.containerID, err)
	}
}

func addresses(res *cni.Result) string {
	var parts []string
	for _, ip := range res.IPs {
		parts = append(parts, ip.Address.String())
	}
	return strings.Join(parts, " ")
}

// withPrev adds prevResult to a request's configuration.
func withPrev(t testing.TB, stdin string, prev *cni.Result, version string) string {
	t.Helper()
	obj, err := cni.ParseObject([]byte(stdin))
	if err != nil {
		t.Fatal(err)
	}
	data, merr := prev.Marshal(version)
	if merr != nil {
		t.Fatal(merr)
	}
	obj.SetRaw("prevResult", data)
	return string(obj.Bytes())
}

// storeFiles lists the reservations in a network's directory as
// "ip=content" pairs (cnikit's index entries are listed by indexEntries).
func storeFiles(t testing.TB, dataDir string) string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dataDir, "testnet"))
	if err != nil {
		if os.IsNotExist(err) {
			return ""
		}
		t.Fatal(err)
	}
	var parts []string
	for _, e := range entries {
		if e.Name() == "lock" || strings.HasPrefix(e.Name(), "last_reserved_ip.") || strings.HasPrefix(e.Name(), ".cnikit-") {
			continue
		}
		data, _ := os.ReadFile(filepath.Join(dataDir, "testnet", e.Name()))
		parts = append(parts, e.Name()+"="+strings.ReplaceAll(string(data), "\r\n", "/"))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// indexEntries lists cnikit's index entries in a network's directory as
// "containerID:ifname->target" pairs.
func indexEntries(t testing.TB, dataDir string) string {
	t.Helper()
	dir := filepath.Join(dataDir, "testnet")
	names, err := filepath.Glob(filepath.Join(dir, ".cnikit-attachment*"))
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, name := range names {
		target, err := os.Readlink(name)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, strings.TrimPrefix(filepath.Base(name), ".cnikit-attachment:")+"->"+target)
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func TestAddResultPerVersion(t *testing.T) {
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 10.0.0.53\nsearch a.example b.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		version string
		want    string
	}{
		{"1.1.0", `{"cniVersion":"1.1.0","ips":[{"address":"10.7.0.2/24","gateway":"10.7.0.1"},{"address":"fd07::2/120","gateway":"fd07::1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["10.0.0.53"],"search":["a.example","b.example"]}}`},
		{"0.4.0", `{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.7.0.2/24","gateway":"10.7.0.1"},{"version":"6","address":"fd07::2/120","gateway":"fd07::1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["10.0.0.53"],"search":["a.example","b.example"]}}`},
		{"0.2.0", `{"cniVersion":"0.2.0","ip4":{"ip":"10.7.0.2/24","gateway":"10.7.0.1","routes":[{"dst":"0.0.0.0/0"}]},"ip6":{"ip":"fd07::2/120","gateway":"fd07::1"},"dns":{"nameservers":["10.0.0.53"],"search":["a.example","b.example"]}}`},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			stdin := conf(t, tt.version, map[string]any{"dataDir": t.TempDir(), "ranges": ranges("10.7.0.0/24", "fd07::/120"),
				"routes": []map[string]string{{"dst": "0.0.0.0/0"}}, "resolvConf": resolv}, nil)
			out, err := run(t, request{verb: "ADD", stdin: stdin, containerID: "c1"})
			if err != nil {
				t.Fatal(err)
			}
			var compact strings.Builder
			var v any
			if err := json.Unmarshal(out, &v); err != nil {
				t.Fatal(err)
			}
			data, _ := json.Marshal(v)
			compact.Write(data)
			var want any
			json.Unmarshal([]byte(tt.want), &want)
			wantData, _ := json.Marshal(want)
			if compact.String() != string(wantData) {
				t.Errorf("got  %s\nwant %s", compact.String(), wantData)
			}
		})
	}
}

func TestAddDelRoundTrip(t *testing.T) {
	dataDir := t.TempDir()
	stdin := conf(t, "1.0.0", map[string]any{"dataDir": dataDir, "ranges": ranges("10.7.0.0/29", "fd07::/125")}, nil)
	r1 := mustAdd(t, stdin, "c1")
	r2 := mustAdd(t, stdin, "c2")
	if addresses(r1) != "10.7.0.2/29 fd07::2/125" || addresses(r2) != "10.7.0.3/29 fd07::3/125" {
		t.Fatalf("got %s and %s", addresses(r1), addresses(r2))
	}
	if got := storeFiles(t, dataDir); got != "10.7.0.2=c1/eth0 10.7.0.3=c2/eth0 fd07::2=c1/eth0 fd07::3=c2/eth0" {
		t.Errorf("store %s", got)
	}
	// DEL with prevResult, with CNI_NETNS empty, twice.
	del := request{verb: "DEL", stdin: withPrev(t, stdin, r1, "1.0.0"), containerID: "c1"}
	mustSucceed(t, del)
	mustSucceed(t, del)
	// DEL without prevResult.
	mustSucceed(t, request{verb: "DEL", stdin: stdin, containerID: "c2", netns: "/gone"})
	if got := storeFiles(t, dataDir); got != "" {
		t.Errorf("store after DEL: %s", got)
	}
	// Round-robin goes on after the last reserved address.
	if r3 := mustAdd(t, stdin, "c3"); addresses(r3) != "10.7.0.4/29 fd07::4/125" {
		t.Errorf("third ADD got %s", addresses(r3))
	}
}

func TestBadRequestCreatesNoStore(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	stdin := conf(t, "1.0.0", map[string]any{"dataDir": dataDir, "ranges": ranges("10.7.0.0/29")}, nil)
	if _, err := run(t, request{verb: "ADD", stdin: stdin, containerID: "c1", cniArgs: "IP=10.7.0.1"}); err == nil || err.Code != cni.CodeInvalidNetworkConfig {
		t.Fatalf("requesting the gateway: %v", err)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("a refused ADD created the data directory")
	}
}

func TestDelWithoutStore(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "never-created")
	stdin := conf(t, "1.0.0", map[string]any{"dataDir": dataDir, "ranges": ranges("10.7.0.0/29")}, nil)
	mustSucceed(t, request{verb: "DEL", stdin: stdin, containerID: "c1"})
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("DEL created the data directory")
	}
}

func TestAddErrorsChangeNothing(t *testing.T) {
	dataDir := t.TempDir()
	base := map[string]any{"dataDir": dataDir, "ranges": ranges("10.7.0.0/30", "fd07::/120")}
	stdin := conf(t, "1.0.0", base, nil)
	mustAdd(t, stdin, "c1")
	before := storeFiles(t, dataDir)
	tests := []struct {
		name    string
		stdin   string
		cid     string
		cniArgs string
		code    cni.Code
		want    string
	}{
		{name: "exhausted IPv4 set", stdin: stdin, cid: "c2", code: ipam.CodeRangeExhausted,
			want: "no IP addresses available in range set ipam.ranges[0]: 10.7.0.1-10.7.0.2"},
		{name: "duplicate", stdin: stdin, cid: "c1", code: ipam.CodeDuplicateAllocation, want: "duplicate allocation is not allowed"},
		{name: "requested IP taken", stdin: stdin, cid: "c3", cniArgs: "IP=10.7.0.2", code: cni.CodeTryAgainLater,
			want: "requested IP address 10.7.0.2 is not available: it is reserved by container c1 interface eth0"},
		{name: "requested IP outside", stdin: stdin, cid: "c3", cniArgs: "IP=10.9.0.1", code: cni.CodeInvalidNetworkConfig,
			want: "requested IP 10.9.0.1 is not in any range set"},
		{name: "missing resolvConf", stdin: conf(t, "1.0.0", map[string]any{"dataDir": dataDir, "ranges": ranges("10.8.0.0/24"), "resolvConf": "/nonexistent/resolv.conf"}, nil),
			cid: "c4", code: cni.CodeInvalidNetworkConfig, want: `ipam.resolvConf "/nonexistent/resolv.conf"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := run(t, request{verb: "ADD", stdin: tt.stdin, containerID: tt.cid, cniArgs: tt.cniArgs})
			if err == nil || err.Code != tt.code || !strings.Contains(err.Msg, tt.want) {
				t.Fatalf("got %v, want code %d containing %q", err, tt.code, tt.want)
			}
			if after := storeFiles(t, dataDir); after != before {
				t.Errorf("store changed: %s -> %s", before, after)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	dataDir := t.TempDir()
	stdin := conf(t, "1.0.0", map[string]any{"dataDir": dataDir, "ranges": ranges("10.7.0.0/29", "fd07::/125")}, nil)
	r1 := mustAdd(t, stdin, "c1")
	mustSucceed(t, request{verb: "CHECK", stdin: withPrev(t, stdin, r1, "1.0.0"), containerID: "c1"})
	mustSucceed(t, request{verb: "CHECK", stdin: stdin, containerID: "c1"})

	_, err := run(t, request{verb: "CHECK", stdin: withPrev(t, stdin, r1, "1.0.0"), containerID: "c2"})
	if err == nil || err.Code != ipam.CodeAllocationMissing {
		t.Errorf("CHECK of another container: %v", err)
	}
	mustSucceed(t, request{verb: "DEL", stdin: stdin, containerID: "c1"})
	_, err = run(t, request{verb: "CHECK", stdin: withPrev(t, stdin, r1, "1.0.0"), containerID: "c1"})
	if err == nil || err.Code != ipam.CodeAllocationMissing || !strings.Contains(err.Msg, "10.7.0.2 of the previous result is not reserved") {
		t.Errorf("CHECK after DEL: %v", err)
	}
	missing := conf(t, "1.0.0", map[string]any{"dataDir": filepath.Join(dataDir, "none"), "ranges": ranges("10.7.0.0/29")}, nil)
	if _, err := run(t, request{verb: "CHECK", stdin: missing, containerID: "c1"}); err == nil || err.Code != ipam.CodeAllocationMissing {
		t.Errorf("CHECK without a store: %v", err)
	}
}

func TestGC(t *testing.T) {
	dataDir := t.TempDir()
	stdin := conf(t, "1.1.0", map[string]any{"dataDir": dataDir, "ranges": ranges("10.7.0.0/29")}, nil)
	for _, id := range []string{"c1", "c2", "c3"} {
		mustAdd(t, stdin, id)
	}
	// An old-format reservation of a live container, and an empty file.
	os.WriteFile(filepath.Join(dataDir, "testnet", "10.7.0.6"), []byte("c9"), 0o600)
	os.WriteFile(filepath.Join(dataDir, "testnet", "10.7.0.5"), nil, 0o600)

	gcConf := func(key string, keep ...string) string {
		var list []map[string]string
		for _, k := range keep {
			id, ifname, _ := strings.Cut(k, "/")
			list = append(list, map[string]string{"containerID": id, "ifname": ifname})
		}
		// GC requests carry no runtimeConfig; ranges are not needed.
		return conf(t, "1.1.0", map[string]any{"dataDir": dataDir}, map[string]any{key: list})
	}
	mustSucceed(t, request{verb: "GC", stdin: gcConf("cni.dev/valid-attachments", "c1/eth0", "c3/eth0", "c9/eth0")})
	if got := storeFiles(t, dataDir); got != "10.7.0.2=c1/eth0 10.7.0.4=c3/eth0 10.7.0.6=c9" {
		t.Errorf("after GC: %s", got)
	}
	// The index follows: entries of released attachments go; an old-format
	// reservation names no interface and has none.
	if got := indexEntries(t, dataDir); got != "c1:eth0->10.7.0.2 c3:eth0->10.7.0.4" {
		t.Errorf("index after GC: %s", got)
	}
	mustSucceed(t, request{verb: "GC", stdin: gcConf("cni.dev/attachments", "c3/eth0")})
	if got := storeFiles(t, dataDir); got != "10.7.0.4=c3/eth0" {
		t.Errorf("after GC with the older key: %s", got)
	}
	// A network that never allocated.
	other := conf(t, "1.1.0", map[string]any{"dataDir": filepath.Join(dataDir, "x")}, map[string]any{"cni.dev/valid-attachments": []any{}})
	mustSucceed(t, request{verb: "GC", stdin: other})
	// GC needs cniVersion 1.1.0.
	old := conf(t, "1.0.0", map[string]any{"dataDir": dataDir}, nil)
	if _, err := run(t, request{verb: "GC", stdin: old}); err == nil || err.Code != cni.CodeIncompatibleVersion {
		t.Errorf("GC at 1.0.0: %v", err)
	}
}

func TestStatus(t *testing.T) {
	dataDir := t.TempDir()
	file := filepath.Join(dataDir, "file")
	os.WriteFile(file, nil, 0o600)
	tiny := map[string]any{"dataDir": dataDir, "ranges": ranges("10.7.0.0/30", "fd07::/120")}
	stdin := conf(t, "1.1.0", tiny, nil)

	mustSucceed(t, request{verb: "STATUS", stdin: stdin})
	mustAdd(t, stdin, "c1")
	_, err := run(t, request{verb: "STATUS", stdin: stdin})
	if err == nil || err.Code != cni.CodePluginNotAvailable || !strings.Contains(err.Msg, "no free address in range set ipam.ranges[0] (10.7.0.1-10.7.0.2)") {
		t.Errorf("STATUS with the /30 full: %v", err)
	}
	tests := []struct {
		name  string
		ipam  map[string]any
		wantE string
	}{
		{"unwritable data dir", map[string]any{"dataDir": filepath.Join(file, "sub"), "ranges": ranges("10.7.0.0/24")}, "is not a directory"},
		{"range with only the gateway", map[string]any{"dataDir": filepath.Join(dataDir, "new"),
			"ranges": [][]map[string]string{{{"subnet": "10.9.0.0/24", "rangeStart": "10.9.0.1", "rangeEnd": "10.9.0.1"}}}}, "no free address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := run(t, request{verb: "STATUS", stdin: conf(t, "1.1.0", tt.ipam, nil)})
			if err == nil || err.Code != cni.CodePluginNotAvailable || !strings.Contains(err.Msg, tt.wantE) {
				t.Errorf("got %v, want code 50 containing %q", err, tt.wantE)
			}
		})
	}
	// Ranges known only at ADD time (ipRanges capability): nothing to judge.
	mustSucceed(t, request{verb: "STATUS", stdin: conf(t, "1.1.0", map[string]any{"dataDir": dataDir}, nil)})
}

func TestRequestedIPSources(t *testing.T) {
	dataDir := t.TempDir()
	base := map[string]any{"dataDir": dataDir, "ranges": ranges("10.7.0.0/24", "fd07::/120")}
	tests := []struct {
		name    string
		top     map[string]any
		cniArgs string
		want    string
	}{
		{"CNI_ARGS", nil, "IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.7.0.50", "10.7.0.50/24 fd07::2/120"},
		{"args.cni.ips over CNI_ARGS", map[string]any{"args": map[string]any{"cni": map[string]any{"ips": []string{"10.7.0.60/24", "fd07::60"}}}},
			"IP=10.7.0.51", "10.7.0.60/24 fd07::60/120"},
		{"runtimeConfig.ips", map[string]any{"runtimeConfig": map[string]any{"ips": []string{"fd07::70/120"}}}, "", "10.7.0.61/24 fd07::70/120"}, // round-robin after .60
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(t, request{verb: "ADD", stdin: conf(t, "1.0.0", base, tt.top), containerID: fmt.Sprintf("c%d", i), cniArgs: tt.cniArgs})
			if err != nil {
				t.Fatal(err)
			}
			res, _ := cni.ParseResult(out, "")
			if got := addresses(res); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
			mustSucceed(t, request{verb: "DEL", stdin: conf(t, "1.0.0", base, nil), containerID: fmt.Sprintf("c%d", i)})
		})
	}
}

func TestIPRangesCapability(t *testing.T) {
	dataDir := t.TempDir()
	stdin := conf(t, "1.0.0", map[string]any{"dataDir": dataDir, "ranges": ranges("fd07::/120")},
		map[string]any{"runtimeConfig": map[string]any{"ipRanges": [][]map[string]string{{{"subnet": "10.7.0.0/24", "rangeStart": "10.7.0.100"}}}}})
	if got := addresses(mustAdd(t, stdin, "c1")); got != "10.7.0.100/24 fd07::2/120" {
		t.Errorf("got %s", got)
	}
	// The ipRanges set comes first, so it owns last_reserved_ip.0.
	data, _ := os.ReadFile(filepath.Join(dataDir, "testnet", "last_reserved_ip.0"))
	if string(data) != "10.7.0.100" {
		t.Errorf("last_reserved_ip.0 = %q", data)
	}
}

func TestOldVersionOneAddressPerFamily(t *testing.T) {
	stdin := conf(t, "0.2.0", map[string]any{"dataDir": t.TempDir(), "ranges": ranges("10.7.0.0/24", "10.8.0.0/24")}, nil)
	_, err := run(t, request{verb: "ADD", stdin: stdin, containerID: "c1"})
	if err == nil || err.Code != cni.CodeInvalidNetworkConfig || !strings.Contains(err.Msg, "one address per family") {
		t.Errorf("got %v", err)
	}
}

// TestDelWithPrevResultDoesNotScan: a DEL whose prevResult and index entry
// cover every range set releases those addresses by name and looks no
// further. A second reservation of the attachment, planted as the reference
// would write it, shows it: only the next DEL, which finds no index entry and
// scans the directory, releases it. Entries that are not files (a directory
// named like an address) disturb neither.
func TestDelWithPrevResultDoesNotScan(t *testing.T) {
	dataDir := t.TempDir()
	stdin := conf(t, "1.0.0", map[string]any{"dataDir": dataDir, "ranges": ranges("10.7.0.0/24", "fd07::/120")}, nil)
	r1 := mustAdd(t, stdin, "c1")
	dir := filepath.Join(dataDir, "testnet")
	if err := os.WriteFile(filepath.Join(dir, "10.7.0.99"), []byte("c1\r\neth0"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "10.7.0.200"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, request{verb: "DEL", stdin: withPrev(t, stdin, r1, "1.0.0"), containerID: "c1"})
	if got := storeFiles(t, dataDir); got != "10.7.0.200= 10.7.0.99=c1/eth0" {
		t.Errorf("after DEL with prevResult: %s", got)
	}
	mustSucceed(t, request{verb: "DEL", stdin: stdin, containerID: "c1"})
	if got := storeFiles(t, dataDir); got != "10.7.0.200=" {
		t.Errorf("after DEL without prevResult: %s", got)
	}
}
