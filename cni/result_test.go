package cni

import (
	"bytes"
	"flag"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func readSource(t *testing.T, version string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "results", version+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// checkGolden compares got with testdata/<name>, or rewrites it under -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

// TestConvertGolden converts a result of every version to every version and
// compares the printed output with testdata/convert/<from>-to-<to>.json. The
// golden files were checked by hand against spec-notes §1.13 (CV1-CV7).
func TestConvertGolden(t *testing.T) {
	for _, from := range AllVersions {
		for _, to := range AllVersions {
			t.Run(from+"-to-"+to, func(t *testing.T) {
				r, err := ParseResult(readSource(t, from), "")
				if err != nil {
					t.Fatal(err)
				}
				if r.CNIVersion != from {
					t.Errorf("parsed CNIVersion = %q, want %q", r.CNIVersion, from)
				}
				var buf bytes.Buffer
				if err := r.Print(&buf, to); err != nil {
					t.Fatalf("Print(%s): %v", to, err)
				}
				checkGolden(t, filepath.Join("convert", from+"-to-"+to+".json"), buf.Bytes())

				// Convert must agree with Print: same data, read back as `to`.
				c, err := r.Convert(to)
				if err != nil {
					t.Fatal(err)
				}
				if c.CNIVersion != to {
					t.Errorf("Convert(%s).CNIVersion = %q", to, c.CNIVersion)
				}
				again, err := c.Marshal(to)
				if err != nil {
					t.Fatal(err)
				}
				first, _ := r.Marshal(to)
				if !bytes.Equal(again, first) {
					t.Errorf("Convert(%s) then Marshal differs from Marshal:\n%s\n%s", to, again, first)
				}
			})
		}
	}
}

// TestConvertRoundTrip checks that converting up and back down within the
// lossless families returns the same bytes as the source.
func TestConvertRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		from, to string
	}{
		{"0.1.0 via 0.2.0", "0.1.0", "0.2.0"},
		{"0.2.0 via 1.1.0", "0.2.0", "1.1.0"},
		{"0.3.0 via 0.4.0", "0.3.0", "0.4.0"},
		{"0.4.0 via 1.0.0", "0.4.0", "1.0.0"},
		{"0.3.1 via 1.1.0", "0.3.1", "1.1.0"},
		{"1.0.0 via 1.1.0", "1.0.0", "1.1.0"},
		{"1.0.0 via 0.4.0", "1.0.0", "0.4.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseResult(readSource(t, tt.from), "")
			if err != nil {
				t.Fatal(err)
			}
			want, _ := r.Marshal(tt.from)
			mid, err := r.Convert(tt.to)
			if err != nil {
				t.Fatal(err)
			}
			got, err := mid.Marshal(tt.from)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("round trip changed the result:\ngot  %s\nwant %s", got, want)
			}
		})
	}
}

func TestConvertLossy(t *testing.T) {
	source := func(t *testing.T, v string) *Result {
		r, err := ParseResult(readSource(t, v), "")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	t.Run("0.2.0 without IP is an error", func(t *testing.T) {
		for _, v := range []string{"0.1.0", "0.2.0"} {
			r := &Result{Interfaces: []*Interface{{Name: "eth0"}}, DNS: DNS{Domain: "x"}}
			_, err := r.Marshal(v)
			if err == nil || !strings.Contains(err.Error(), "no valid IP addresses") {
				t.Errorf("Marshal(%s) = %v, want an error about no valid IP addresses", v, err)
			}
			if _, err := r.Convert(v); err == nil {
				t.Errorf("Convert(%s) succeeded", v)
			}
		}
	})
	t.Run("routes attached by family", func(t *testing.T) {
		r := source(t, "0.4.0")
		c, err := r.Convert("0.2.0")
		if err != nil {
			t.Fatal(err)
		}
		// The source lists the IPv6 address first; ip4 must still be the
		// first IPv4 one, and each route follows its destination's family.
		var got []string
		for _, ip := range c.IPs {
			got = append(got, ip.Address.String())
		}
		for _, rt := range c.Routes {
			got = append(got, rt.Dst.String())
		}
		want := []string{"10.1.0.5/16", "2001:db8::5/64", "0.0.0.0/0", "10.20.0.0/16", "fd00::/8"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	})
	t.Run("routes of a family without an address are dropped", func(t *testing.T) {
		r := &Result{
			IPs:    []*IPConfig{{Address: mustCIDR(t, "10.0.0.2/24")}},
			Routes: []*Route{{Dst: mustCIDR(t, "::/0")}, {Dst: mustCIDR(t, "0.0.0.0/0")}},
		}
		c, err := r.Convert("0.2.0")
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Routes) != 1 || c.Routes[0].Dst.String() != "0.0.0.0/0" {
			t.Errorf("routes = %v, want only 0.0.0.0/0", c.Routes)
		}
	})
	t.Run("interfaces dropped below 0.3.0", func(t *testing.T) {
		c, err := source(t, "1.1.0").Convert("0.2.0")
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Interfaces) != 0 {
			t.Errorf("interfaces = %v", c.Interfaces)
		}
		for _, ip := range c.IPs {
			if ip.Interface != nil {
				t.Errorf("ip %s keeps interface %d", &ip.Address, *ip.Interface)
			}
		}
	})
	t.Run("mtu socketPath pciID dropped below 1.0.0", func(t *testing.T) {
		for _, v := range []string{"0.3.0", "0.3.1", "0.4.0"} {
			c, err := source(t, "1.1.0").Convert(v)
			if err != nil {
				t.Fatal(err)
			}
			eth0 := c.Interfaces[2]
			if eth0.MTU != 0 || eth0.SocketPath != "" || eth0.PciID != "" {
				t.Errorf("%s: eth0 = %+v", v, eth0)
			}
			if eth0.Name != "eth0" || eth0.Mac == "" || eth0.Sandbox == "" {
				t.Errorf("%s: eth0 lost name, mac or sandbox: %+v", v, eth0)
			}
		}
		c, err := source(t, "1.1.0").Convert("1.0.0")
		if err != nil {
			t.Fatal(err)
		}
		if c.Interfaces[2].MTU != 1450 || c.Interfaces[2].PciID == "" {
			t.Errorf("1.0.0 lost interface fields: %+v", c.Interfaces[2])
		}
	})
	t.Run("ips version recomputed", func(t *testing.T) {
		// A 0.4.0 result that labels its addresses wrongly: the version written
		// is the address's real family, not what the input said.
		in := `{"cniVersion":"0.4.0","ips":[{"version":"6","address":"10.0.0.2/24"},{"address":"2001:db8::2/64"}]}`
		r, err := ParseResult([]byte(in), "")
		if err != nil {
			t.Fatal(err)
		}
		out, err := r.Marshal("0.3.1")
		if err != nil {
			t.Fatal(err)
		}
		want := `{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.0.0.2/24"},{"version":"6","address":"2001:db8::2/64"}]}`
		if string(out) != want {
			t.Errorf("got  %s\nwant %s", out, want)
		}
		out, _ = r.Marshal("1.0.0")
		if strings.Contains(string(out), `"version"`) {
			t.Errorf("1.0.0 output has ips[].version: %s", out)
		}
	})
	t.Run("route attributes kept down to 0.3.0", func(t *testing.T) {
		for _, v := range []string{"1.0.0", "0.4.0", "0.3.1", "0.3.0"} {
			c, err := source(t, "1.1.0").Convert(v)
			if err != nil {
				t.Fatal(err)
			}
			rt := c.Routes[0]
			if rt.MTU != 1400 || rt.AdvMSS != 1360 || rt.Priority != 10 || rt.Table == nil || *rt.Table != 100 || rt.Scope == nil || *rt.Scope != 0 {
				t.Errorf("%s: route attributes lost: %+v", v, rt)
			}
		}
	})
}

func TestParseResultFallbackVersion(t *testing.T) {
	legacy := `{"ip4":{"ip":"10.0.0.2/24"}}`
	modern := `{"ips":[{"address":"10.0.0.2/24","interface":0}],"interfaces":[{"name":"eth0","mtu":9000}]}`
	tests := []struct {
		name, data, fallback string
		wantVersion          string
		wantIPs              int
		wantMTU              int
	}{
		{"no version, no fallback reads 0.1.0", legacy, "", "0.1.0", 1, 0},
		{"no version, fallback 0.2.0", legacy, "0.2.0", "0.2.0", 1, 0},
		{"no version, fallback 1.1.0", modern, "1.1.0", "1.1.0", 1, 9000},
		{"no version, fallback 0.4.0 drops mtu", modern, "0.4.0", "0.4.0", 1, 0},
		{"empty version uses the fallback", `{"cniVersion":"","ips":[{"address":"10.0.0.2/24"}]}`, "1.0.0", "1.0.0", 1, 0},
		{"own version beats the fallback", `{"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.2/24"}}`, "1.1.0", "0.2.0", 1, 0},
		{"modern shape read as 0.1.0 has no IPs", modern, "", "0.1.0", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseResult([]byte(tt.data), tt.fallback)
			if err != nil {
				t.Fatal(err)
			}
			if r.CNIVersion != tt.wantVersion || len(r.IPs) != tt.wantIPs {
				t.Errorf("version %q with %d IPs, want %q with %d", r.CNIVersion, len(r.IPs), tt.wantVersion, tt.wantIPs)
			}
			mtu := 0
			if len(r.Interfaces) > 0 {
				mtu = r.Interfaces[0].MTU
			}
			if mtu != tt.wantMTU {
				t.Errorf("mtu = %d, want %d", mtu, tt.wantMTU)
			}
		})
	}
}

func TestParseResultErrors(t *testing.T) {
	tests := []struct {
		name, data string
		code       Code
		wantMsg    string
	}{
		{"not JSON", `{"cniVersion":`, CodeDecodingFailure, "decoding result"},
		{"not an object", `["1.0.0"]`, CodeDecodingFailure, "decoding result"},
		{"null", `null`, CodeDecodingFailure, "not a JSON object"},
		{"unknown version", `{"cniVersion":"2.0.0"}`, CodeIncompatibleVersion, `"2.0.0"`},
		{"bad address", `{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.300/24"}]}`, CodeDecodingFailure, "10.0.0.300/24"},
		{"address without prefix", `{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.3"}]}`, CodeDecodingFailure, "10.0.0.3"},
		{"missing address", `{"cniVersion":"1.0.0","ips":[{"gateway":"10.0.0.1"}]}`, CodeDecodingFailure, "ips[0] has no address"},
		{"null ip", `{"cniVersion":"0.4.0","ips":[null]}`, CodeDecodingFailure, "ips[0]"},
		{"null interface", `{"cniVersion":"1.0.0","interfaces":[null]}`, CodeDecodingFailure, "interfaces[0] is null"},
		{"route without dst", `{"cniVersion":"1.1.0","routes":[{"gw":"10.0.0.1"}]}`, CodeDecodingFailure, "routes[0] has no dst"},
		{"bad gateway", `{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.3/24","gateway":"x"}]}`, CodeDecodingFailure, "x"},
		{"mtu not a number", `{"cniVersion":"1.1.0","interfaces":[{"name":"a","mtu":"9000"}]}`, CodeDecodingFailure, "mtu"},
		{"ip4 without ip", `{"cniVersion":"0.2.0","ip4":{"gateway":"10.0.0.1"}}`, CodeDecodingFailure, "ip4 has no ip"},
		{"ip4 holding IPv6", `{"cniVersion":"0.2.0","ip4":{"ip":"2001:db8::1/64"}}`, CodeDecodingFailure, "2001:db8::1/64"},
		{"ip6 holding IPv4", `{"cniVersion":"0.1.0","ip6":{"ip":"10.0.0.1/8"}}`, CodeDecodingFailure, "10.0.0.1/8"},
		{"legacy route without dst", `{"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.1/8","routes":[{}]}}`, CodeDecodingFailure, "ip4.routes[0]"},
		{"mapped address with short prefix", `{"cniVersion":"1.0.0","ips":[{"address":"::ffff:10.0.0.1/64"}]}`, CodeDecodingFailure, "::ffff:10.0.0.1/64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseResult([]byte(tt.data), "")
			if err == nil {
				t.Fatal("no error")
			}
			if CodeOf(err) != tt.code {
				t.Errorf("code %d, want %d (%v)", CodeOf(err), tt.code, err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tt.wantMsg)
			}
		})
	}
}

func TestMarshalUnsupportedVersion(t *testing.T) {
	r := &Result{IPs: []*IPConfig{{Address: mustCIDR(t, "10.0.0.2/24")}}}
	for _, v := range []string{"1.2.0", "0.5.0", "1.0", "x"} {
		_, err := r.Marshal(v)
		if CodeOf(err) != CodeIncompatibleVersion || !strings.Contains(err.Error(), v) {
			t.Errorf("Marshal(%q) = %v, want code 1 naming the version", v, err)
		}
	}
}

func TestMarshalEmptyVersionIsLegacy(t *testing.T) {
	r := &Result{IPs: []*IPConfig{{Address: mustCIDR(t, "10.0.0.2/24")}}}
	out, err := r.Marshal("")
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"cniVersion":"","ip4":{"ip":"10.0.0.2/24"}}`; string(out) != want {
		t.Errorf("got %s, want %s", out, want)
	}
}

func TestMarshalRefusesInvalidAddresses(t *testing.T) {
	tests := []struct {
		name string
		ip   net.IPNet
	}{
		{"no address", net.IPNet{}},
		{"no mask", net.IPNet{IP: net.ParseIP("10.0.0.1")}},
		{"non-contiguous mask", net.IPNet{IP: net.ParseIP("10.0.0.1").To4(), Mask: net.IPv4Mask(255, 0, 255, 0)}},
		{"IPv6 address with IPv4 mask", net.IPNet{IP: net.ParseIP("2001:db8::1"), Mask: net.CIDRMask(24, 32)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Result{IPs: []*IPConfig{{Address: tt.ip}}}
			if out, err := r.Marshal("1.1.0"); err == nil {
				t.Errorf("Marshal succeeded: %s", out)
			}
		})
	}
}

func TestParseCIDR(t *testing.T) {
	tests := []struct {
		in, want string
		ipLen    int
	}{
		{"10.1.2.3/24", "10.1.2.3/24", 4},
		{"2001:db8::7/64", "2001:db8::7/64", 16},
		{"::ffff:10.1.2.3/120", "10.1.2.3/24", 4},
		{"0.0.0.0/0", "0.0.0.0/0", 4},
	}
	for _, tt := range tests {
		n, err := ParseCIDR(tt.in)
		if err != nil {
			t.Errorf("ParseCIDR(%q): %v", tt.in, err)
			continue
		}
		got, err := FormatCIDR(*n)
		if err != nil || got != tt.want || len(n.IP) != tt.ipLen || len(n.Mask) != tt.ipLen {
			t.Errorf("ParseCIDR(%q) = %v (%d/%d bytes), %v; want %s", tt.in, got, len(n.IP), len(n.Mask), err, tt.want)
		}
	}
	for _, bad := range []string{"", "10.0.0.1", "10.0.0.1/33", "::ffff:10.0.0.1/95", "x/24"} {
		if _, err := ParseCIDR(bad); err == nil {
			t.Errorf("ParseCIDR(%q) succeeded", bad)
		}
	}
}

func TestResultCopyIsDeep(t *testing.T) {
	r, err := ParseResult(readSource(t, "1.1.0"), "")
	if err != nil {
		t.Fatal(err)
	}
	before, _ := r.Marshal("1.1.0")
	c := r.Copy()
	if !reflect.DeepEqual(c, r) {
		t.Fatal("copy differs from the original")
	}
	c.Interfaces[0].Name = "changed"
	*c.IPs[0].Interface = 7
	c.IPs[0].Address.IP[0] = 99
	c.IPs[0].Gateway[0] = 99
	c.Routes[0].Dst.Mask[0] = 0
	*c.Routes[0].Table = 1
	c.DNS.Nameservers[0] = "changed"
	after, _ := r.Marshal("1.1.0")
	if !bytes.Equal(before, after) {
		t.Errorf("changing the copy changed the original:\n%s\n%s", before, after)
	}
}

func TestPrintIndentsWithFourSpaces(t *testing.T) {
	r := &Result{IPs: []*IPConfig{{Address: mustCIDR(t, "10.0.0.2/24")}}}
	var buf bytes.Buffer
	if err := r.Print(&buf, "1.0.0"); err != nil {
		t.Fatal(err)
	}
	want := "{\n    \"cniVersion\": \"1.0.0\",\n    \"ips\": [\n        {\n            \"address\": \"10.0.0.2/24\"\n        }\n    ]\n}\n"
	if buf.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", buf.String(), want)
	}
}

func mustCIDR(t *testing.T, s string) net.IPNet {
	t.Helper()
	n, err := ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return *n
}
