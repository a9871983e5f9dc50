// Command cnibench measures CNI plugin chains side by side: the same driver
// (cnikit's runtime library, executing plugin binaries exactly as containerd or
// Podman would) runs the same network configuration against cnikit's plugins
// and against the reference plugins, and reports ADD and DEL latency
// percentiles in one table.
//
// It needs root. All work happens in throw-away network namespaces: the
// benchmark re-executes itself inside a fresh "host" namespace per
// implementation, so bridges, addresses and nftables rules never touch the
// machine's own network, and every container namespace is removed afterwards.
//
//	go run ./bench/cnibench -n 200
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/netns"
	_ "github.com/cnikit/cnikit/plugins/bridge"
	_ "github.com/cnikit/cnikit/plugins/host-local"
	_ "github.com/cnikit/cnikit/plugins/loopback"
	cniruntime "github.com/cnikit/cnikit/runtime"
	"github.com/cnikit/cnikit/skel"
)

// chains are the network configurations measured. The reference plugins of
// Debian 12 (v1.1.1) speak at most CNI 1.0.0, so that is the version used.
var chains = map[string]string{
	"bridge+host-local": `{
  "cniVersion": "1.0.0", "name": "bench",
  "plugins": [{"type": "bridge", "bridge": "benchbr0", "isGateway": true,
    "ipam": {"type": "host-local", "dataDir": "%DATA%", "ranges": [[{"subnet": "10.200.0.0/16"}]]}}]}`,
	"bridge+ipMasq+host-local": `{
  "cniVersion": "1.0.0", "name": "bench",
  "plugins": [{"type": "bridge", "bridge": "benchbr0", "isGateway": true, "ipMasq": true,
    "ipam": {"type": "host-local", "dataDir": "%DATA%", "ranges": [[{"subnet": "10.200.0.0/16"}]]}}]}`,
}

// measurement is what one sandboxed run reports to the parent.
type measurement struct {
	Impl   string    `json:"impl"`
	Chain  string    `json:"chain"`
	Add    []float64 `json:"add"` // milliseconds
	Del    []float64 `json:"del"`
	Errors []string  `json:"errors"`
}

func main() {
	// Run under a plugin's name, this program is that plugin, as cnikit is: the
	// "in-process" rows link the plugins to this very executable, so that the
	// runtime library may serve them without starting a process.
	if p, ok := skel.Lookup(filepath.Base(os.Args[0])); ok {
		skel.Main(p)
	}
	n := flag.Int("n", 100, "containers per implementation and chain")
	cnikitDir := flag.String("cnikit", "", "directory of cnikit plugin links (default: build and link ./cmd/cnikit)")
	refDir := flag.String("reference", "/usr/lib/cni", "directory of the reference plugins")
	chainList := flag.String("chains", "bridge+host-local,bridge+ipMasq+host-local", "comma-separated chains to run")
	sandboxed := flag.String("sandboxed", "", "internal: impl=dir:chain, run inside the sandbox")
	markdown := flag.Bool("markdown", true, "print a Markdown table")
	flag.Parse()

	if *sandboxed != "" {
		runSandboxed(*sandboxed, *n)
		return
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "cnibench: needs root (it creates network namespaces)")
		os.Exit(1)
	}
	dir := *cnikitDir
	if dir == "" {
		var err error
		dir, err = buildCnikit()
		if err != nil {
			fmt.Fprintln(os.Stderr, "cnibench:", err)
			os.Exit(1)
		}
		defer os.RemoveAll(dir)
	}
	selfDir, err := linkSelf()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cnibench:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(selfDir)
	impls := []struct{ name, dir string }{
		{"reference", *refDir},
		{"cnikit", dir},
		{"cnikit in-process", selfDir},
	}
	var results []measurement
	for _, chain := range strings.Split(*chainList, ",") {
		for _, impl := range impls {
			m, err := runInSandbox(impl.name, impl.dir, chain, *n)
			if err != nil {
				fmt.Fprintf(os.Stderr, "cnibench: %s %s: %v\n", impl.name, chain, err)
				os.Exit(1)
			}
			results = append(results, m)
		}
	}
	report(results, *n, *markdown)
}

func buildCnikit() (string, error) {
	dir, err := os.MkdirTemp("", "cnibench-bin-")
	if err != nil {
		return "", err
	}
	os.Chmod(dir, 0o755)
	out, err := exec.Command("./scripts/build.sh", filepath.Join(dir, "cnikit")).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building cnikit: %v\n%s", err, out)
	}
	for _, name := range []string{"bridge", "host-local", "loopback"} {
		if err := os.Symlink("cnikit", filepath.Join(dir, name)); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// linkSelf makes a plugin directory of links to this executable.
func linkSelf() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "cnibench-self-")
	if err != nil {
		return "", err
	}
	os.Chmod(dir, 0o755)
	for _, name := range skel.Names() {
		if err := os.Symlink(self, filepath.Join(dir, name)); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// runInSandbox re-executes this program inside a fresh network namespace and
// collects its measurement.
func runInSandbox(impl, dir, chain string, n int) (measurement, error) {
	tmp, err := os.MkdirTemp("", "cnibench-")
	if err != nil {
		return measurement{}, err
	}
	defer os.RemoveAll(tmp)
	nsPath := filepath.Join(tmp, "host")
	if err := netns.CreateAt(nsPath); err != nil {
		return measurement{}, err
	}
	defer netns.RemoveAt(nsPath)
	ns, err := netns.Open(nsPath)
	if err != nil {
		return measurement{}, err
	}
	defer ns.Close()

	self, _ := os.Executable()
	cmd := exec.Command(self, "-sandboxed", impl+"="+dir+":"+chain, "-n", fmt.Sprint(n))
	cmd.Stderr = os.Stderr
	var out []byte
	var runErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // the thread stays in the sandbox and dies with the goroutine
		if err := unix.Setns(ns.Fd(), unix.CLONE_NEWNET); err != nil {
			runErr = err
			return
		}
		out, runErr = cmd.Output()
	}()
	<-done
	if runErr != nil {
		return measurement{}, runErr
	}
	var m measurement
	return m, json.Unmarshal(out, &m)
}

// runSandboxed is the child: it is inside the sandbox host namespace.
func runSandboxed(spec string, n int) {
	impl, rest, _ := strings.Cut(spec, "=")
	dir, chain, _ := strings.Cut(rest, ":")
	tmp, err := os.MkdirTemp("", "cnibench-run-")
	must(err)
	defer os.RemoveAll(tmp)
	conf, ok := chains[chain]
	if !ok {
		must(fmt.Errorf("unknown chain %q", chain))
	}
	conf = strings.ReplaceAll(conf, "%DATA%", filepath.Join(tmp, "ipam"))
	list, err := cni.ParseConfigList([]byte(conf))
	must(err)
	rt := cniruntime.New(cniruntime.Config{Path: []string{dir}, CacheDir: filepath.Join(tmp, "cache"),
		InProcess: strings.HasSuffix(impl, "in-process")})

	m := measurement{Impl: impl, Chain: chain, Errors: []string{}}
	paths := make([]string, n)
	for i := range paths {
		paths[i] = filepath.Join(tmp, fmt.Sprintf("c%d", i))
		must(netns.CreateAt(paths[i]))
	}
	defer func() {
		for _, p := range paths {
			netns.RemoveAt(p)
		}
	}()
	att := func(i int) *cniruntime.Attachment {
		return &cniruntime.Attachment{ContainerID: fmt.Sprintf("bench%d", i), Netns: paths[i], IfName: "eth0"}
	}
	ctx := context.Background()
	for i := 0; i < n; i++ {
		start := time.Now()
		_, err := rt.Add(ctx, list, att(i))
		m.Add = append(m.Add, ms(time.Since(start)))
		if err != nil {
			m.Errors = append(m.Errors, err.Error())
		}
	}
	for i := 0; i < n; i++ {
		start := time.Now()
		err := rt.Del(ctx, list, att(i))
		m.Del = append(m.Del, ms(time.Since(start)))
		if err != nil {
			m.Errors = append(m.Errors, err.Error())
		}
	}
	must(json.NewEncoder(os.Stdout).Encode(m))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "cnibench:", err)
		os.Exit(1)
	}
}

func percentile(values []float64, p float64) float64 {
	if len(values) == 0 {
		return 0
	}
	s := append([]float64(nil), values...)
	sort.Float64s(s)
	i := int(p * float64(len(s)-1))
	return s[i]
}

func report(results []measurement, n int, markdown bool) {
	host, _ := os.Hostname()
	fmt.Printf("cnibench: %d containers per run, %s, %d CPUs, kernel %s, %s\n\n", n, host, runtime.NumCPU(), kernel(), time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| chain | plugins | ADD p50 ms | ADD p95 ms | DEL p50 ms | DEL p95 ms | errors |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|")
	byChain := map[string]map[string]measurement{}
	for _, m := range results {
		if byChain[m.Chain] == nil {
			byChain[m.Chain] = map[string]measurement{}
		}
		byChain[m.Chain][m.Impl] = m
		fmt.Printf("| %s | %s | %.2f | %.2f | %.2f | %.2f | %d |\n", m.Chain, m.Impl,
			percentile(m.Add, .5), percentile(m.Add, .95), percentile(m.Del, .5), percentile(m.Del, .95), len(m.Errors))
	}
	fmt.Println()
	for chain, impls := range byChain {
		ref, okR := impls["reference"]
		for _, name := range []string{"cnikit", "cnikit in-process"} {
			ck, okC := impls[name]
			if okR && okC {
				fmt.Printf("%s: %s ADD p50 = %.2f× reference, DEL p50 = %.2f× reference\n", chain, name,
					percentile(ck.Add, .5)/percentile(ref.Add, .5), percentile(ck.Del, .5)/percentile(ref.Del, .5))
			}
		}
		for impl, m := range impls {
			for i, e := range m.Errors {
				if i == 3 {
					fmt.Printf("  %s: ... %d more errors\n", impl, len(m.Errors)-3)
					break
				}
				fmt.Printf("  %s error: %s\n", impl, e)
			}
		}
	}
}

func kernel() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}
