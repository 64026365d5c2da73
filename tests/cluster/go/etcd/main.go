// Command etcd runs a single-member etcd server through etcd's own embed package (the server
// kube-apiserver's tests start), built from the same source tree as the control plane.
package main

import (
	"flag"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/embed"
)

func main() {
	dataDir := flag.String("data-dir", "", "the folder etcd keeps its data in (required)")
	clientURL := flag.String("listen-client-url", "http://127.0.0.1:2379", "where clients connect")
	peerURL := flag.String("listen-peer-url", "http://127.0.0.1:2380", "where peers connect")
	flag.Parse()
	if *dataDir == "" {
		log.Fatal("--data-dir is required")
	}
	client, err := url.Parse(*clientURL)
	if err != nil {
		log.Fatalf("--listen-client-url: %v", err)
	}
	peer, err := url.Parse(*peerURL)
	if err != nil {
		log.Fatalf("--listen-peer-url: %v", err)
	}
	cfg := embed.NewConfig()
	cfg.Name = "gust-test"
	cfg.Dir = *dataDir
	cfg.LCUrls, cfg.ACUrls = []url.URL{*client}, []url.URL{*client}
	cfg.LPUrls, cfg.APUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.Logger = "zap"
	cfg.LogOutputs = []string{"stderr"}
	// A test cluster's data is thrown away: no fsync, so tests do not wait on the disk.
	cfg.UnsafeNoFsync = true
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = "5m"

	server, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatalf("starting etcd: %v", err)
	}
	select {
	case <-server.Server.ReadyNotify():
		log.Printf("etcd is ready on %s", client)
	case <-time.After(60 * time.Second):
		server.Server.Stop()
		log.Fatal("etcd did not become ready in 60s")
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	select {
	case sig := <-signals:
		log.Printf("%s: stopping", sig)
		server.Close()
	case err := <-server.Err():
		log.Fatalf("etcd stopped: %v", err)
	}
}
