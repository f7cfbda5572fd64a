package kube

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Configuration files of the daemons, one function each.

func containerdConfig(l Layout, n Node, pauseImage string) string {
	root := filepath.Join(l.node(n), "containerd")
	state := filepath.Join(l.nodeRun(n), "containerd")
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
# The kubelet's OOM protection writes a negative oom_score_adj, which needs CAP_SYS_RESOURCE; a VM or
# container without it makes every sandbox fail, so the CRI plugin keeps the scores it is allowed to set.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %[3]q

[ttrpc]
  address = ""

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_unprivileged_ports = false
  enable_unprivileged_icmp = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    discard_unpacked_layers = true
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[6]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[7]q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %[8]q
`, root, state, l.containerdSock(n), filepath.Join(root, "opt"), pauseImage,
		filepath.Join(l.nodeRun(n), "runc"), filepath.Join(l.node(n), "cni", "net.d"), l.certsDir(n))
}

// cniConfig: a bridge per node with its own pod range; no masquerade (pod addresses are routed as they are)
// and IPAM state kept under the node's directory (the default /var/lib/cni would be shared by all nodes).
func cniConfig(l Layout, n Node) string {
	return fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "txmesh",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %q
      }
    },
    {"type": "loopback"}
  ]
}
`, n.PodNet.String(), filepath.Join(l.node(n), "cni", "ipam"))
}

func kubeletConfig(l Layout, n Node, pkiDir string) string {
	root := l.node(n)
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %[1]s/ca.crt
authorization:
  mode: Webhook
tlsCertFile: %[1]s/%[2]s-serving.crt
tlsPrivateKeyFile: %[1]s/%[2]s-serving.key
cgroupDriver: cgroupfs
cgroupRoot: /%[3]s
cgroupsPerQOS: true
clusterDNS: [%[4]s]
clusterDomain: cluster.local
containerRuntimeEndpoint: unix://%[5]s
failSwapOn: false
podLogsDir: %[6]s/pod-logs
resolvConf: %[6]s/resolv.conf
volumePluginDir: %[6]s/volume-plugins
staticPodPath: ""
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
# Every node sees the whole machine: keep eviction thresholds that a shared developer disk satisfies.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 2%%
  imagefs.available: 2%%
  nodefs.inodesFree: 2%%
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
shutdownGracePeriod: 0s
`, pkiDir, n.Name, n.Cgroup, l.net().DNSService, l.containerdSock(n), root)
}

func kubeletArgs(bin string, l Layout, n Node) []string {
	root := l.node(n)
	return []string{bin,
		"--config=" + filepath.Join(root, "kubelet.yaml"),
		"--kubeconfig=" + filepath.Join(root, "kubelet.kubeconfig"),
		"--root-dir=" + filepath.Join(root, "kubelet"),
		"--hostname-override=" + n.Name,
		"--node-ip=" + n.IP.String(),
		"--node-labels=" + strings.Join([]string{
			"topology.kubernetes.io/zone=" + n.Zone,
			"topology.kubernetes.io/region=local",
		}, ","),
		"--v=1",
	}
}

// kubeProxyConfig: nftables mode (its own tables, removed with one command; the netns of a node goes away
// anyway), conntrack sysctls left alone, NodePorts only on the cluster's own addresses.
func kubeProxyConfig(l Layout, kubeconfig, hostname, bind string, nodePortCIDR string) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection:
  kubeconfig: %s
hostnameOverride: %s
bindAddress: %s
healthzBindAddress: %s:10256
metricsBindAddress: %s:10249
clusterCIDR: %s
nodePortAddresses: [%q]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, kubeconfig, hostname, bind, bind, bind, l.net().PodNet, nodePortCIDR)
}

func etcdArgs(bin string, l Layout, client, peer int) []string {
	return []string{bin,
		"--name=control-plane",
		"--data-dir=" + l.etcd(),
		fmt.Sprintf("--listen-client-urls=http://127.0.0.1:%d", client),
		fmt.Sprintf("--advertise-client-urls=http://127.0.0.1:%d", client),
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", peer),
		fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", peer),
		fmt.Sprintf("--initial-cluster=control-plane=http://127.0.0.1:%d", peer),
		"--listen-metrics-urls=",
		"--quota-backend-bytes=2147483648",
		"--snapshot-count=10000",
		"--log-level=warn",
	}
}

func apiserverArgs(bin string, l Layout, etcdPort int) []string {
	p, nw := l.pki(), l.net()
	return []string{bin,
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", etcdPort),
		"--bind-address=" + nw.HostIP.String(),
		"--advertise-address=" + nw.HostIP.String(),
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--service-cluster-ip-range=" + nw.ServiceNet.String(),
		"--tls-cert-file=" + p + "/apiserver.crt",
		"--tls-private-key-file=" + p + "/apiserver.key",
		"--client-ca-file=" + p + "/ca.crt",
		"--kubelet-client-certificate=" + p + "/apiserver-kubelet-client.crt",
		"--kubelet-client-key=" + p + "/apiserver-kubelet-client.key",
		"--kubelet-certificate-authority=" + p + "/ca.crt",
		"--kubelet-preferred-address-types=InternalIP",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p + "/sa.pub",
		"--service-account-signing-key-file=" + p + "/sa.key",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		// Webhooks and aggregated APIs are called at endpoint addresses: the control plane needs no Service
		// translation of its own (the host kube-proxy waits a minute for a Node of its name that never comes).
		"--enable-aggregator-routing=true",
		"--profiling=false",
		"--event-ttl=1h",
		"--v=1",
	}
}

func controllerManagerArgs(bin string, l Layout) []string {
	p := l.pki()
	kc := filepath.Join(l.control(), "controller-manager.kubeconfig")
	return []string{bin,
		"--kubeconfig=" + kc,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--bind-address=" + l.net().HostIP.String(),
		"--secure-port=10257",
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + p + "/sa.key",
		"--root-ca-file=" + p + "/ca.crt",
		"--cluster-signing-cert-file=" + p + "/ca.crt",
		"--cluster-signing-key-file=" + p + "/ca.key",
		"--cluster-name=" + clusterName,
		"--allocate-node-cidrs=false",
		"--profiling=false",
		"--v=1",
	}
}

func schedulerArgs(bin string, l Layout) []string {
	kc := filepath.Join(l.control(), "scheduler.kubeconfig")
	return []string{bin,
		"--kubeconfig=" + kc,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--bind-address=" + l.net().HostIP.String(),
		"--secure-port=10259",
		"--leader-elect=false",
		"--profiling=false",
		"--v=1",
	}
}
