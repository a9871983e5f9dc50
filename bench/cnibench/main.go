// Command cnibench measures CNI plugin chains side by side: the same driver
// (cnikit's runtime library, executing plugin binaries exactly as containerd or
// Podman would) runs the same network configuration against the reference
// plugins and against cnikit's, and reports ADD and DEL latency percentiles,
// or throughput with concurrent workers, in one table.
//
// It needs root. All work happens in throw-away network namespaces: for each
// run the benchmark re-executes itself inside a fresh "host" namespace, so
// bridges, addresses and nftables/iptables rules never touch the machine's own
// network, and every container namespace is removed afterwards.
//
//	go run ./bench/cnibench -n 200                     # latency, every chain
//	go run ./bench/cnibench -chains standard -existing 1000
//	go run ./bench/cnibench -chains standard -workers 8 -n 200
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
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cnikit/cnikit/cni"
	"github.com/cnikit/cnikit/internal/rundir"
	"github.com/cnikit/cnikit/invoke"
	"github.com/cnikit/cnikit/netns"
	_ "github.com/cnikit/cnikit/plugins/bridge"
	_ "github.com/cnikit/cnikit/plugins/firewall"
	_ "github.com/cnikit/cnikit/plugins/host-local"
	_ "github.com/cnikit/cnikit/plugins/loopback"
	_ "github.com/cnikit/cnikit/plugins/portmap"
	_ "github.com/cnikit/cnikit/plugins/tuning"
	cniruntime "github.com/cnikit/cnikit/runtime"
	"github.com/cnikit/cnikit/skel"
)

// chains are the network configurations measured. The reference plugins of
// Debian 12 (v1.1.1) speak at most CNI 1.0.0, so that is the version used.
// "standard" is what most clusters and Podman run.
var chains = map[string]string{
	"minimal": `{"cniVersion": "1.0.0", "name": "bench", "plugins": [
    {"type": "bridge", "bridge": "benchbr0", "isGateway": true,
     "ipam": {"type": "host-local", "dataDir": "%DATA%", "ranges": [[{"subnet": "10.200.0.0/16"}]]}}]}`,
	"masq": `{"cniVersion": "1.0.0", "name": "bench", "plugins": [
    {"type": "bridge", "bridge": "benchbr0", "isGateway": true, "ipMasq": true,
     "ipam": {"type": "host-local", "dataDir": "%DATA%", "ranges": [[{"subnet": "10.200.0.0/16"}]]}}]}`,
	"standard": `{"cniVersion": "1.0.0", "name": "bench", "plugins": [
    {"type": "bridge", "bridge": "benchbr0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "%DATA%", "ranges": [[{"subnet": "10.200.0.0/16"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall"},
    {"type": "tuning"}]}`,
}

var chainDescriptions = map[string]string{
	"minimal":  "bridge + host-local",
	"masq":     "bridge (ipMasq) + host-local",
	"standard": "bridge (ipMasq) + host-local → portmap (1 mapping) → firewall → tuning",
}

// job is one sandboxed run: an implementation's plugins on one chain.
type job struct {
	CPUProfile string `json:"cpuprofile,omitempty"`
	PerPlugin  bool   `json:"perPlugin,omitempty"`
	Impl       string `json:"impl"`
	Dir        string `json:"dir"`
	Chain      string `json:"chain"`
	N          int    `json:"n"`
	Existing   int    `json:"existing"`
	Workers    int    `json:"workers"`
}

// measurement is what one sandboxed run reports to the parent.
type measurement struct {
	job
	// Plugins holds each plugin's ADD and DEL times (milliseconds) of the
	// measured containers, for in-process runs (-per-plugin).
	Plugins    map[string][]float64 `json:"plugins,omitempty"`
	Add        []float64            `json:"add"` // milliseconds, sequential runs only
	Del        []float64            `json:"del"`
	Seconds    float64              `json:"seconds"` // wall time of the ADDs, concurrent runs
	Errors     []string             `json:"errors"`
	Duplicates int                  `json:"duplicates"`
}

func main() {
	// Run under a plugin's name, this program is that plugin, as cnikit is: the
	// "cnikit in-process" runs link the plugins to this very executable, so that
	// the runtime library may serve them without starting a process.
	if p, ok := skel.Lookup(filepath.Base(os.Args[0])); ok {
		skel.Main(p)
	}
	n := flag.Int("n", 100, "containers measured per run")
	existing := flag.Int("existing", 0, "attachments added (unmeasured) before the measured ones")
	workers := flag.Int("workers", 0, "with >0: that many concurrent workers ADD the n containers; reports containers/s")
	cnikitDir := flag.String("cnikit", "", "directory of cnikit plugin links (default: build ./cmd/cnikit with scripts/build.sh)")
	refDir := flag.String("reference", "/usr/lib/cni", "directory of the reference plugins")
	chainList := flag.String("chains", "minimal,masq,standard", "comma-separated chains: "+strings.Join(chainNames(), ", "))
	implList := flag.String("impls", "reference,cnikit,cnikit in-process", "comma-separated implementations")
	sandboxed := flag.String("sandboxed", "", "internal: a job as JSON, run inside the sandbox")
	perPlugin := flag.Bool("per-plugin", false, "time each plugin of in-process runs (ADD and DEL p50 per plugin)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the measured phase of each run to FILE.<impl>.<chain>")
	flag.Parse()

	if *sandboxed != "" {
		var j job
		must(json.Unmarshal([]byte(*sandboxed), &j))
		runJob(j)
		return
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "cnibench: needs root (it creates network namespaces)")
		os.Exit(1)
	}
	dirs := map[string]string{"reference": *refDir}
	if *cnikitDir != "" {
		dirs["cnikit"] = *cnikitDir
	} else {
		dir, err := buildCnikit()
		must(err)
		defer os.RemoveAll(dir)
		dirs["cnikit"] = dir
	}
	selfDir, err := linkSelf()
	must(err)
	defer os.RemoveAll(selfDir)
	dirs["cnikit in-process"] = selfDir

	var results []measurement
	for _, chain := range strings.Split(*chainList, ",") {
		if _, ok := chains[chain]; !ok {
			must(fmt.Errorf("unknown chain %q (have %s)", chain, strings.Join(chainNames(), ", ")))
		}
		for _, impl := range strings.Split(*implList, ",") {
			dir, ok := dirs[impl]
			if !ok {
				must(fmt.Errorf("unknown implementation %q", impl))
			}
			fmt.Fprintf(os.Stderr, "cnibench: %s on %s ...\n", impl, chain)
			j := job{Impl: impl, Dir: dir, Chain: chain, N: *n, Existing: *existing, Workers: *workers,
				PerPlugin: *perPlugin && strings.HasSuffix(impl, "in-process")}
			if *cpuProfile != "" {
				j.CPUProfile = fmt.Sprintf("%s.%s.%s", *cpuProfile, strings.ReplaceAll(impl, " ", "-"), chain)
			}
			m, err := runInSandbox(j)
			must(err)
			results = append(results, m)
		}
	}
	report(results)
}

func chainNames() []string {
	var names []string
	for n := range chains {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func buildCnikit() (string, error) {
	dir, err := os.MkdirTemp("", "cnibench-bin-")
	if err != nil {
		return "", err
	}
	os.Chmod(dir, 0o755)
	out, err := exec.Command("./scripts/build.sh", filepath.Join(dir, "cnikit")).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building cnikit (run from the repository root): %v\n%s", err, out)
	}
	for _, name := range skel.Names() {
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
func runInSandbox(j job) (measurement, error) {
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

	spec, _ := json.Marshal(j)
	self, _ := os.Executable()
	cmd := exec.Command(self, "-sandboxed", string(spec))
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

// runJob is the child: it is inside the sandbox host namespace.
func runJob(j job) {
	tmp, err := os.MkdirTemp("", "cnibench-run-")
	must(err)
	defer os.RemoveAll(tmp)
	// The plugins' own state (portmap records, ...) stays in the sandbox too.
	must(os.Setenv(rundir.Env, filepath.Join(tmp, "state")))
	conf := strings.ReplaceAll(chains[j.Chain], "%DATA%", filepath.Join(tmp, "ipam"))
	list, err := cni.ParseConfigList([]byte(conf))
	must(err)
	timer := &pluginTimer{times: map[string][]float64{}}
	cfg := cniruntime.Config{Path: []string{j.Dir}, CacheDir: filepath.Join(tmp, "cache"),
		InProcess: strings.HasSuffix(j.Impl, "in-process")}
	if j.PerPlugin {
		cfg.InProcess, cfg.Exec = false, timer
	}
	rt := cniruntime.New(cfg)
	must(loopbackUp())

	total := j.Existing + j.N
	paths := make([]string, total)
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
		return &cniruntime.Attachment{
			ContainerID: fmt.Sprintf("bench%d", i), Netns: paths[i], IfName: "eth0",
			CapabilityArgs: map[string]any{"portMappings": []map[string]any{
				{"hostPort": 20000 + i, "containerPort": 80, "protocol": "tcp"}}},
		}
	}
	ctx := context.Background()
	m := measurement{job: j, Errors: []string{}}
	for i := 0; i < j.Existing; i++ {
		if _, err := rt.Add(ctx, list, att(i)); err != nil {
			m.Errors = append(m.Errors, "existing: "+err.Error())
		}
	}
	if j.Existing > 0 {
		// Write back the prefill's thousands of new files now, so that the
		// journal commit does not land in the measured ADDs.
		if d, err := os.Open(tmp); err == nil {
			unix.Syncfs(int(d.Fd()))
			d.Close()
		}
	}
	timer.enable()
	if j.CPUProfile != "" {
		f, err := os.Create(j.CPUProfile)
		must(err)
		must(pprof.StartCPUProfile(f))
	}
	if j.Workers > 0 {
		runConcurrent(ctx, rt, list, att, j, &m)
	} else {
		for i := j.Existing; i < total; i++ {
			start := time.Now()
			_, err := rt.Add(ctx, list, att(i))
			m.Add = append(m.Add, ms(time.Since(start)))
			if err != nil {
				m.Errors = append(m.Errors, err.Error())
			}
		}
		for i := j.Existing; i < total; i++ {
			start := time.Now()
			err := rt.Del(ctx, list, att(i))
			m.Del = append(m.Del, ms(time.Since(start)))
			if err != nil {
				m.Errors = append(m.Errors, err.Error())
			}
		}
	}
	if j.CPUProfile != "" {
		pprof.StopCPUProfile()
	}
	timer.disable()
	if j.PerPlugin {
		m.Plugins = timer.times
	}
	for i := 0; i < j.Existing; i++ {
		rt.Del(ctx, list, att(i))
	}
	must(json.NewEncoder(os.Stdout).Encode(m))
}

// runConcurrent has j.Workers workers ADD the measured containers, counts
// errors and duplicate addresses, then deletes them all.
func runConcurrent(ctx context.Context, rt *cniruntime.Runtime, list *cni.ConfigList,
	att func(int) *cniruntime.Attachment, j job, m *measurement) {
	var mu sync.Mutex
	seen := map[string]bool{}
	next := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < j.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				res, err := rt.Add(ctx, list, att(i))
				mu.Lock()
				if err != nil {
					m.Errors = append(m.Errors, err.Error())
				} else {
					for _, ip := range res.IPs {
						if seen[ip.Address.IP.String()] {
							m.Duplicates++
						}
						seen[ip.Address.IP.String()] = true
					}
				}
				mu.Unlock()
			}
		}()
	}
	for i := j.Existing; i < j.Existing+j.N; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	m.Seconds = time.Since(start).Seconds()
	for i := j.Existing; i < j.Existing+j.N; i++ {
		rt.Del(ctx, list, att(i))
	}
}

// pluginTimer runs cnikit's plugins in-process, as the runtime's InProcess
// mode does, and records how long each verb of each plugin takes.
type pluginTimer struct {
	mu    sync.Mutex
	on    bool
	times map[string][]float64 // "<verb> <plugin>" -> ms
}

func (p *pluginTimer) enable()  { p.mu.Lock(); p.on = true; p.mu.Unlock() }
func (p *pluginTimer) disable() { p.mu.Lock(); p.on = false; p.mu.Unlock() }

// Exec implements cniruntime.Executor.
func (p *pluginTimer) Exec(ctx context.Context, path string, stdin []byte, env invoke.Env) ([]byte, error) {
	plugin, ok := skel.Lookup(filepath.Base(path))
	if !ok {
		return nil, fmt.Errorf("no in-process plugin %s", filepath.Base(path))
	}
	start := time.Now()
	out, cerr := skel.Invoke(ctx, plugin, &skel.Args{Env: env, StdinData: stdin})
	elapsed := ms(time.Since(start))
	p.mu.Lock()
	if p.on {
		key := env.Command + " " + plugin.Name
		p.times[key] = append(p.times[key], elapsed)
	}
	p.mu.Unlock()
	if cerr != nil {
		return nil, cerr
	}
	return out, nil
}

// loopbackUp brings the sandbox's lo up, as on a real host.
func loopbackUp() error {
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return fmt.Errorf("ip link set lo up: %v: %s", err, out)
	}
	return nil
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
	return s[int(p*float64(len(s)-1))]
}

func report(results []measurement) {
	host, _ := os.Hostname()
	fmt.Printf("cnibench on %s: %d CPUs, kernel %s, %s\n\n", host, runtime.NumCPU(), kernel(), time.Now().UTC().Format("2006-01-02"))
	concurrent := len(results) > 0 && results[0].Workers > 0
	if concurrent {
		fmt.Println("| chain | plugins | containers | workers | containers/s | errors | duplicate IPs |")
		fmt.Println("|---|---|---:|---:|---:|---:|---:|")
	} else {
		fmt.Println("| chain | plugins | existing | ADD p50 ms | ADD p95 ms | DEL p50 ms | DEL p95 ms | errors |")
		fmt.Println("|---|---|---:|---:|---:|---:|---:|---:|")
	}
	ref := map[string]measurement{}
	for _, m := range results {
		if m.Impl == "reference" {
			ref[m.Chain] = m
		}
		if concurrent {
			fmt.Printf("| %s | %s | %d | %d | %.1f | %d | %d |\n", chainDescriptions[m.Chain], m.Impl, m.N, m.Workers,
				float64(m.N)/m.Seconds, len(m.Errors), m.Duplicates)
		} else {
			fmt.Printf("| %s | %s | %d | %.2f | %.2f | %.2f | %.2f | %d |\n", chainDescriptions[m.Chain], m.Impl, m.Existing,
				percentile(m.Add, .5), percentile(m.Add, .95), percentile(m.Del, .5), percentile(m.Del, .95), len(m.Errors))
		}
	}
	fmt.Println()
	for _, m := range results {
		r, ok := ref[m.Chain]
		if ok && m.Impl != "reference" {
			if concurrent {
				fmt.Printf("%s, %s: %.1f× the reference's containers/s\n", m.Chain, m.Impl,
					(float64(m.N)/m.Seconds)/(float64(r.N)/r.Seconds))
			} else {
				fmt.Printf("%s, %s: ADD p50 %.2f× the reference's, DEL p50 %.2f×\n", m.Chain, m.Impl,
					percentile(m.Add, .5)/percentile(r.Add, .5), percentile(m.Del, .5)/percentile(r.Del, .5))
			}
		}
		if len(m.Plugins) > 0 {
			keys := make([]string, 0, len(m.Plugins))
			for k := range m.Plugins {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			fmt.Printf("%s, %s, %d existing, p50 per plugin:", m.Chain, m.Impl, m.Existing)
			for _, k := range keys {
				fmt.Printf("  %s %.2f ms", k, percentile(m.Plugins[k], .5))
			}
			fmt.Println()
		}
		for i, e := range m.Errors {
			if i == 3 {
				fmt.Printf("  %s on %s: ... %d more errors\n", m.Impl, m.Chain, len(m.Errors)-3)
				break
			}
			fmt.Printf("  %s on %s error: %s\n", m.Impl, m.Chain, e)
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
