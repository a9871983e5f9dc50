package hostlocal

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"strings"

	"github.com/cnikit/cnikit/cni"
)

// parseResolvConf reads the nameserver, domain, search and options lines of a
// resolv.conf file into a result's DNS section. Comments (# or ;), blank lines,
// unknown keywords and keywords without a value are skipped, as the reference
// does; search and options lines add all their values.
func parseResolvConf(path string) (cni.DNS, error) {
	var dns cni.DNS
	f, err := os.Open(path)
	if err != nil {
		code := cni.CodeIOFailure
		if errors.Is(err, fs.ErrNotExist) {
			code = cni.CodeInvalidNetworkConfig
		}
		return dns, cni.Errorf(code, "ipam.resolvConf %q: %v", path, err)
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "nameserver":
			dns.Nameservers = append(dns.Nameservers, fields[1])
		case "domain":
			dns.Domain = fields[1]
		case "search":
			dns.Search = append(dns.Search, fields[1:]...)
		case "options":
			dns.Options = append(dns.Options, fields[1:]...)
		}
	}
	if err := scanner.Err(); err != nil {
		return dns, cni.Errorf(cni.CodeIOFailure, "ipam.resolvConf %q: %v", path, err)
	}
	return dns, nil
}
