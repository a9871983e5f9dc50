package bandwidth

import (
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/link"
	"github.com/cnikit/cnikit/skel"
)

// conf is the bandwidth plugin's configuration; README.md lists every key.
// The four limits are pointers so that "present" differs from "absent": the
// bandwidth capability is used only when none of them is present, as in the
// reference.
type conf struct {
	cni.PluginConf
	IngressRate  *uint64 `json:"ingressRate"`
	IngressBurst *uint64 `json:"ingressBurst"`
	EgressRate   *uint64 `json:"egressRate"`
	EgressBurst  *uint64 `json:"egressBurst"`

	RuntimeConfig struct {
		Bandwidth *capabilityLimits `json:"bandwidth"`
	} `json:"runtimeConfig"`

	// Derived by parse: the shaping to do, nil for a direction left alone.
	ingress, egress *link.TBF
}

// capabilityLimits is runtimeConfig.bandwidth, the bandwidth capability.
type capabilityLimits struct {
	IngressRate  uint64 `json:"ingressRate"`
	IngressBurst uint64 `json:"ingressBurst"`
	EgressRate   uint64 `json:"egressRate"`
	EgressBurst  uint64 `json:"egressBurst"`
}

func invalid(format string, a ...any) error {
	return cni.Errorf(cni.CodeInvalidNetworkConfig, "bandwidth: "+format, a...)
}

// decode reads the configuration without judging the limits: enough for
// DEL and GC, which need the network name only.
func decode(args *skel.Args) (*conf, error) {
	c := &conf{}
	if err := json.Unmarshal(args.StdinData, c); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return nil, invalid("%s: %s is not a valid value (want a non-negative integer)", typeErr.Field, typeErr.Value)
		}
		return nil, cni.Errorf(cni.CodeDecodingFailure, "bandwidth: decoding configuration: %v", err)
	}
	c.CNIVersion = args.Version
	if err := c.ParsePrevResult(); err != nil {
		return nil, err
	}
	return c, nil
}

// parse decodes and checks the configuration and computes the TBFs; every
// error names the key and its value, and nothing has been changed yet.
func parse(args *skel.Args) (*conf, error) {
	c, err := decode(args)
	if err != nil {
		return nil, err
	}
	val := func(p *uint64) uint64 {
		if p == nil {
			return 0
		}
		return *p
	}
	if c.IngressRate != nil || c.IngressBurst != nil || c.EgressRate != nil || c.EgressBurst != nil {
		if c.ingress, err = explicitTBF("ingress", val(c.IngressRate), val(c.IngressBurst)); err != nil {
			return nil, err
		}
		if c.egress, err = explicitTBF("egress", val(c.EgressRate), val(c.EgressBurst)); err != nil {
			return nil, err
		}
	} else if b := c.RuntimeConfig.Bandwidth; b != nil {
		if c.ingress, err = capabilityTBF("ingress", b.IngressRate, b.IngressBurst); err != nil {
			return nil, err
		}
		if c.egress, err = capabilityTBF("egress", b.EgressRate, b.EgressBurst); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// shapes reports whether the configuration limits anything.
func (c *conf) shapes() bool { return c.ingress != nil || c.egress != nil }

// explicitTBF checks a direction's top-level keys as the reference does:
// rate and burst go together, the burst in bytes must fit 32 bits. They are
// used as given.
func explicitTBF(dir string, rate, burst uint64) (*link.TBF, error) {
	switch {
	case rate == 0 && burst == 0:
		return nil, nil
	case burst == 0:
		return nil, invalid("%sRate %d is set but %sBurst is not: set both", dir, rate, dir)
	case rate == 0:
		return nil, invalid("%sBurst %d is set but %sRate is not: set both", dir, burst, dir)
	case burst/8 >= math.MaxUint32:
		return nil, invalid("%sBurst %d is 4 GiB or more (burst/8 must be below 2^32 bytes)", dir, burst)
	}
	return newTBF(dir, rate, burst)
}

// Bounds of a burst that the capability leaves out or makes absurd. A TBF
// lets a burst through at line rate, so kubelet's default (2^31-1 bits, 256
// Mbit: kubernetes#90838) turns a 10 Mbit/s limit into 2 Gbit/s for about a
// second. The burst must also hold the largest packet, or nothing passes.
const (
	// burstFloorBits is 64 KiB: any packet, a 64 KiB GSO one included.
	burstFloorBits = 64 << 10 * 8
	// burstFloorSeconds caps the floor for a rate too slow to drain 64 KiB
	// in 10 s.
	burstFloorSeconds = 10
	// burstCeilingFraction divides the rate: a burst lasts at most 100 ms
	// at the rate.
	burstCeilingFraction = 10
)

// capabilityBurst is the burst used for a capability rate (bits/s) and
// burst (bits): at least 64 KiB (or 10 s at a rate too slow for that), at
// most 100 ms at the rate (or that floor); a missing burst is the ceiling.
func capabilityBurst(rate, burst uint64) uint64 {
	floor := min(uint64(burstFloorBits), rate*burstFloorSeconds)
	ceiling := max(rate/burstCeilingFraction, floor)
	if burst == 0 {
		return ceiling
	}
	return min(max(burst, floor), ceiling)
}

// capabilityTBF checks a direction of runtimeConfig.bandwidth: a burst
// without a rate is an error, as in the reference; a rate without a burst,
// or with an absurd one, gets capabilityBurst instead of an error.
func capabilityTBF(dir string, rate, burst uint64) (*link.TBF, error) {
	switch {
	case rate == 0 && burst == 0:
		return nil, nil
	case rate == 0:
		return nil, invalid("runtimeConfig.bandwidth.%sBurst %d is set but %sRate is not", dir, burst, dir)
	}
	return newTBF("runtimeConfig.bandwidth."+dir, rate, capabilityBurst(rate, burst))
}

func newTBF(dir string, rate, burst uint64) (*link.TBF, error) {
	t, err := link.NewTBF(rate, burst)
	if err != nil {
		return nil, invalid("%sRate %d, %sBurst %d: %v", dir, rate, dir, burst, err)
	}
	return &t, nil
}

// ifbPrefix starts the IFB's name, as with the reference.
const ifbPrefix = "bwp"

// ifbName is the reference's IFB name for an attachment: "bwp" and the
// first 12 hex digits of sha512(network + containerID), 15 characters. DEL
// finds the reference plugin's IFBs by it, and needs nothing but the two.
func ifbName(network, containerID string) string {
	sum := sha512.Sum512([]byte(network + containerID))
	return ifbPrefix + hex.EncodeToString(sum[:6])
}
