// Package runtime is cnikit's runtime library: what a container runtime
// (containerd, CRI-O, Podman, the cnikit CLI) embeds to run CNI network
// configurations, the equivalent of the reference libcni. Its name clashes with
// the standard library's, so importers usually alias it:
//
//	import cniruntime "github.com/cnikit/cnikit/runtime"
//
// It loads configuration lists from a directory (LoadList, LoadAll, with the
// reference rules for .conflist, .conf and plugin folders), runs them for an
// attachment (Add, Check, Del, following spec §3 exactly: request derivation,
// prevResult chaining, version gates, disableCheck), keeps the final ADD result
// in the reference on-disk cache so that cnitool, Podman and cnikit can read
// each other's, garbage-collects stale attachments (GC), and probes plugins
// (Status, VersionInfo, ValidateList).
//
// Concurrent operations are safe, across goroutines and processes sharing a
// cache directory: operations on one container are serialized, different
// containers run in parallel, and GC of a network excludes its ADDs and DELs.
//
// Plugins run on the calling goroutine's OS thread, in the caller's network
// namespace. With Config.InProcess, cnikit's own plugins run inside the calling
// process when the binary found in the search path is the running executable.
//
// A typical use:
//
//	rt := cniruntime.New(cniruntime.Config{Path: []string{"/opt/cni/bin"}})
//	list, err := cniruntime.LoadList("/etc/cni/net.d", "mynet")
//	if err != nil {
//		return err
//	}
//	att := &cniruntime.Attachment{
//		ContainerID: "f3a1c2",
//		Netns:       "/run/netns/f3a1c2",
//		IfName:      "eth0",
//		Args:        [][2]string{{"IgnoreUnknown", "1"}},
//		CapabilityArgs: map[string]any{
//			"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}},
//		},
//	}
//	result, err := rt.Add(ctx, list, att)
//	if err != nil {
//		var perr *cniruntime.PluginError // which plugin failed
//		var cerr *cni.Error              // its code, message and details
//		errors.As(err, &perr)
//		errors.As(err, &cerr)
//		rt.Del(ctx, list, att) // the spec wants a DEL after any ADD, failed or not
//		return err
//	}
//	result.Print(os.Stdout, list.CNIVersion)
//	...
//	err = rt.Del(ctx, list, att)
package runtime
