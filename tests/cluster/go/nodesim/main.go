// Command nodesim plays the kubelets of a test cluster, as kwok does: it registers nodes and
// moves the pods the scheduler binds to them through their lives without running a container.
//
// A pod bound to one of its nodes starts at once (Running, every container started), runs for
// a second and then ends: Succeeded, or Failed when the annotation sim.gust.dev/exit-code names
// a non-zero exit code for its containers. Annotations change the stage:
//
//	sim.gust.dev/exit-code: "3"              the containers exit with 3 (the pod fails)
//	sim.gust.dev/run-seconds: "5"            how long the containers run (default 1)
//	sim.gust.dev/stage: image-pull-backoff   the image is never pulled: ImagePullBackOff at once
//	                                         (as a watcher sees a pod whose first ErrImagePull it
//	                                         missed), and an event with the pull error
//	sim.gust.dev/stage: err-image-pull       the image is never pulled, as a kubelet says it:
//	                                         ErrImagePull with the pull error and its events,
//	                                         a second or two later ImagePullBackOff and its events
//	sim.gust.dev/pull-error: "..."           the pull error of those two stages (default: the
//	                                         image was not found); "429 Too Many Requests", say,
//	                                         is one that passes
//
// Pods whose restartPolicy is Always keep running. A pod being deleted is removed at once (as a
// kubelet does once its containers have stopped). The nodes serve the kubelet's log endpoint
// with one placeholder line (no container ran); a followed log stays open until the client
// leaves, as kwok's does. Exec is not served: no container runs.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
)

const (
	annotationExitCode   = "sim.gust.dev/exit-code"
	annotationRunSeconds = "sim.gust.dev/run-seconds"
	annotationStage      = "sim.gust.dev/stage"
	annotationPullError  = "sim.gust.dev/pull-error"

	stageImagePullBackOff = "image-pull-backoff"
	stageErrImagePull     = "err-image-pull"
)

type sim struct {
	client kubernetes.Interface
	nodes  map[string]bool
	pods   cache.Indexer
	queue  workqueue.RateLimitingInterface
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "the kubeconfig to reach the API server with (required)")
	count := flag.Int("nodes", 2, "how many nodes to register")
	prefix := flag.String("node-prefix", "sim-node-", "the nodes' names: the prefix and a number")
	cpu := flag.String("node-cpu", "8", "each node's allocatable CPU")
	memory := flag.String("node-memory", "32Gi", "each node's allocatable memory")
	pods := flag.String("node-pods", "110", "how many pods each node takes")
	port := flag.Int("kubelet-port", 10250, "the port the nodes' kubelet endpoint (logs) listens on at 127.0.0.1")
	certFile := flag.String("tls-cert-file", "", "the kubelet endpoint's serving certificate (required)")
	keyFile := flag.String("tls-private-key-file", "", "the kubelet endpoint's key (required)")
	flag.Parse()
	if *kubeconfig == "" || *certFile == "" || *keyFile == "" {
		log.Fatal("--kubeconfig, --tls-cert-file and --tls-private-key-file are required")
	}
	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("reading %s: %v", *kubeconfig, err)
	}
	config.QPS, config.Burst = 200, 400
	client := kubernetes.NewForConfigOrDie(config)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-signals
		cancel()
	}()

	s := &sim{
		client: client,
		nodes:  map[string]bool{},
		queue:  workqueue.NewRateLimitingQueue(workqueue.DefaultControllerRateLimiter()),
	}
	for i := 0; i < *count; i++ {
		name := fmt.Sprintf("%s%d", *prefix, i)
		if err := registerNode(ctx, client, name, *cpu, *memory, *pods, *port); err != nil {
			log.Fatalf("registering node %s: %v", name, err)
		}
		s.nodes[name] = true
	}
	go serveKubelet(ctx, *port, *certFile, *keyFile)

	factory := informers.NewSharedInformerFactory(client, 0)
	podInformer := factory.Core().V1().Pods().Informer()
	enqueue := func(obj interface{}) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			s.queue.Add(key)
		}
	}
	podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj interface{}) { enqueue(obj) },
	})
	s.pods = podInformer.GetIndexer()
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), podInformer.HasSynced) {
		log.Fatal("the pod informer did not sync")
	}
	log.Printf("%d nodes ready", *count)
	for i := 0; i < 4; i++ {
		go wait.UntilWithContext(ctx, s.work, time.Second)
	}
	<-ctx.Done()
	s.queue.ShutDown()
}

func registerNode(ctx context.Context, client kubernetes.Interface, name, cpu, memory, pods string, port int) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: name,
		Labels: map[string]string{
			"type":                   "sim",
			"kubernetes.io/hostname": name,
			"kubernetes.io/os":       "linux",
			"kubernetes.io/arch":     "amd64",
		},
	}}
	created, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		return err
	}
	now := metav1.Now()
	resources := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(cpu),
		corev1.ResourceMemory: resource.MustParse(memory),
		corev1.ResourcePods:   resource.MustParse(pods),
	}
	created.Status = corev1.NodeStatus{
		Capacity:    resources,
		Allocatable: resources,
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "simulated by nodesim", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
			{Type: corev1.NodeHostName, Address: name},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(port)}},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion: "v1.20.2", OperatingSystem: "linux", Architecture: "amd64",
			ContainerRuntimeVersion: "nodesim://0",
		},
	}
	updated, err := client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	// The API server taints a new node not-ready (TaintNodesByCondition); the node lifecycle
	// controller, which this cluster does not run, lifts the taint once the node is Ready.
	var taints []corev1.Taint
	for _, taint := range updated.Spec.Taints {
		if taint.Key != corev1.TaintNodeNotReady {
			taints = append(taints, taint)
		}
	}
	updated.Spec.Taints = taints
	_, err = client.CoreV1().Nodes().Update(ctx, updated, metav1.UpdateOptions{})
	return err
}

func (s *sim) work(ctx context.Context) {
	for {
		item, shutdown := s.queue.Get()
		if shutdown {
			return
		}
		key := item.(string)
		requeue, err := s.sync(ctx, key)
		switch {
		case err != nil:
			log.Printf("pod %s: %v (retrying)", key, err)
			s.queue.AddRateLimited(key)
		case requeue > 0:
			s.queue.Forget(key)
			s.queue.AddAfter(key, requeue)
		default:
			s.queue.Forget(key)
		}
		s.queue.Done(item)
	}
}

// sync moves one pod one step on; it returns when to look at the pod again.
func (s *sim) sync(ctx context.Context, key string) (time.Duration, error) {
	obj, exists, err := s.pods.GetByKey(key)
	if err != nil || !exists {
		return 0, err
	}
	pod := obj.(*corev1.Pod).DeepCopy()
	if !s.nodes[pod.Spec.NodeName] {
		return 0, nil
	}
	pods := s.client.CoreV1().Pods(pod.Namespace)
	if pod.DeletionTimestamp != nil {
		zero := int64(0)
		err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero,
			Preconditions:      &metav1.Preconditions{UID: &pod.UID},
		})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return 0, nil
		}
		return 0, err
	}
	switch pod.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		return 0, nil
	case corev1.PodRunning:
		return s.finish(ctx, pod)
	default:
		if len(pod.Status.ContainerStatuses) > 0 {
			return s.backOff(ctx, pod)
		}
		return s.start(ctx, pod)
	}
}

// pullError is the error pulling `image` ends with: the pod's sim.gust.dev/pull-error, or the
// registry's "not found".
func pullError(pod *corev1.Pod, image string) string {
	if text := pod.Annotations[annotationPullError]; text != "" {
		return fmt.Sprintf("rpc error: code = Unknown desc = failed to pull and unpack image %q: %s", image, text)
	}
	return fmt.Sprintf("rpc error: code = NotFound desc = failed to pull and unpack image %q: not found", image)
}

// pullFailed puts the pod's containers in the waiting state `reason` (ErrImagePull or
// ImagePullBackOff) with the kubelet's events for it; withPull adds the failed pull's events
// before a back-off's (whose ErrImagePull the pod's watchers never saw).
func (s *sim) pullFailed(ctx context.Context, pod *corev1.Pod, reason string, withPull bool) error {
	image := pod.Spec.Containers[0].Image
	pod.Status.Phase = corev1.PodPending
	pod.Status.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		message := fmt.Sprintf("Back-off pulling image %q", c.Image)
		if reason == "ErrImagePull" {
			message = pullError(pod, c.Image)
		}
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}},
		})
	}
	// What a kubelet records: on a failed pull, the pull's own error and the container's
	// (both Failed); on back-off, BackOff and the container's error again.
	pulled := [][2]string{
		{"Failed", fmt.Sprintf("Failed to pull image %q: %s", image, pullError(pod, image))},
		{"Failed", "Error: ErrImagePull"},
	}
	backOff := [][2]string{
		{"BackOff", fmt.Sprintf("Back-off pulling image %q", image)},
		{"Failed", "Error: ImagePullBackOff"},
	}
	var events [][2]string
	if reason == "ErrImagePull" || withPull {
		events = append(events, pulled...)
	}
	if reason == "ImagePullBackOff" {
		events = append(events, backOff...)
	}
	for _, e := range events {
		if err := s.event(ctx, pod, e[0], e[1]); err != nil {
			return err
		}
	}
	_, err := s.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	return ignoreGone(err)
}

// backOff moves a pod whose image pull failed (ErrImagePull) on to ImagePullBackOff a second
// or two later; a pod in back-off waits for ever.
func (s *sim) backOff(ctx context.Context, pod *corev1.Pod) (time.Duration, error) {
	waiting := pod.Status.ContainerStatuses[0].State.Waiting
	if waiting == nil || waiting.Reason != "ErrImagePull" {
		return 0, nil
	}
	// The start time is kept to the second: two seconds after it is one to two after the
	// failed pull.
	if pod.Status.StartTime != nil {
		if left := 2*time.Second - time.Since(pod.Status.StartTime.Time); left > 0 {
			return left, nil
		}
	}
	return 0, s.pullFailed(ctx, pod, "ImagePullBackOff", false)
}

// event records a kubelet's event about the pod's first container.
func (s *sim) event(ctx context.Context, pod *corev1.Pod, reason, message string) error {
	now := metav1.Now()
	kind := corev1.EventTypeWarning
	if reason == "BackOff" {
		kind = corev1.EventTypeNormal
	}
	event := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: pod.Name + ".", Namespace: pod.Namespace},
		InvolvedObject: corev1.ObjectReference{
			Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, APIVersion: "v1",
			FieldPath: "spec.containers{" + pod.Spec.Containers[0].Name + "}",
		},
		Reason: reason, Type: kind, Message: message, Count: 1,
		Source:         corev1.EventSource{Component: "kubelet", Host: pod.Spec.NodeName},
		FirstTimestamp: now, LastTimestamp: now,
	}
	_, err := s.client.CoreV1().Events(pod.Namespace).Create(ctx, event, metav1.CreateOptions{})
	return err
}

func (s *sim) start(ctx context.Context, pod *corev1.Pod) (time.Duration, error) {
	now := metav1.Now()
	pod.Status.HostIP = "127.0.0.1"
	pod.Status.PodIP = "127.0.0.1"
	pod.Status.PodIPs = []corev1.PodIP{{IP: "127.0.0.1"}}
	pod.Status.StartTime = &now
	switch pod.Annotations[annotationStage] {
	case stageImagePullBackOff:
		return 0, s.pullFailed(ctx, pod, "ImagePullBackOff", true)
	case stageErrImagePull:
		if err := s.pullFailed(ctx, pod, "ErrImagePull", false); err != nil {
			return 0, err
		}
		return 2 * time.Second, nil
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
	}
	pod.Status.InitContainerStatuses = nil
	for _, c := range pod.Spec.InitContainers {
		pod.Status.InitContainerStatuses = append(pod.Status.InitContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image, ContainerID: "nodesim://" + c.Name, Ready: true,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now,
			}},
		})
	}
	started := true
	pod.Status.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image, ContainerID: "nodesim://" + c.Name,
			Ready: true, Started: &started,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	if _, err := s.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return 0, ignoreGone(err)
	}
	return runTime(pod), nil
}

func (s *sim) finish(ctx context.Context, pod *corev1.Pod) (time.Duration, error) {
	if pod.Spec.RestartPolicy == corev1.RestartPolicyAlways {
		return 0, nil
	}
	if pod.Status.StartTime != nil {
		if left := runTime(pod) - time.Since(pod.Status.StartTime.Time); left > 0 {
			return left, nil
		}
	}
	code := int32(0)
	if text, ok := pod.Annotations[annotationExitCode]; ok {
		parsed, err := strconv.ParseInt(strings.TrimSpace(text), 10, 32)
		if err != nil {
			log.Printf("pod %s/%s: %s %q is not a number: exiting 1", pod.Namespace, pod.Name, annotationExitCode, text)
			parsed = 1
		}
		code = int32(parsed)
	}
	now := metav1.Now()
	reason, phase := "Completed", corev1.PodSucceeded
	if code != 0 {
		reason, phase = "Error", corev1.PodFailed
	}
	pod.Status.Phase = phase
	for i := range pod.Status.ContainerStatuses {
		status := &pod.Status.ContainerStatuses[i]
		startedAt := now
		if status.State.Running != nil {
			startedAt = status.State.Running.StartedAt
		}
		started := false
		status.Ready, status.Started = false, &started
		status.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: code, Reason: reason, StartedAt: startedAt, FinishedAt: now,
			ContainerID: status.ContainerID,
		}}
	}
	for i := range pod.Status.Conditions {
		switch pod.Status.Conditions[i].Type {
		case corev1.PodReady, corev1.ContainersReady:
			pod.Status.Conditions[i].Status = corev1.ConditionFalse
			pod.Status.Conditions[i].Reason = "PodCompleted"
			pod.Status.Conditions[i].LastTransitionTime = now
		}
	}
	_, err := s.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	return 0, ignoreGone(err)
}

func runTime(pod *corev1.Pod) time.Duration {
	if text, ok := pod.Annotations[annotationRunSeconds]; ok {
		if seconds, err := strconv.ParseFloat(strings.TrimSpace(text), 64); err == nil && seconds >= 0 {
			return time.Duration(seconds * float64(time.Second))
		}
	}
	return time.Second
}

func ignoreGone(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// serveKubelet answers the API server's calls to the nodes' kubelets: a container's log is
// one placeholder line (no container runs); a followed log stays open until the client leaves.
func serveKubelet(ctx context.Context, port int, certFile, keyFile string) {
	mux := http.NewServeMux()
	mux.HandleFunc("/containerLogs/", func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/containerLogs/"), "/")
		if len(parts) != 3 {
			http.NotFound(w, r)
			return
		}
		line := fmt.Sprintf("nodesim: no container ran for %s/%s %s\n", parts[0], parts[1], parts[2])
		if r.URL.Query().Get("timestamps") == "true" {
			line = time.Now().UTC().Format(time.RFC3339Nano) + " " + line
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(line))
		if r.URL.Query().Get("follow") == "true" {
			if flusher, ok := w.(http.Flusher); ok {
				flusher.Flush()
			}
			<-r.Context().Done()
		}
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	server := &http.Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), Handler: mux}
	go func() {
		<-ctx.Done()
		_ = server.Close()
	}()
	if err := server.ListenAndServeTLS(certFile, keyFile); err != nil && err != http.ErrServerClosed {
		log.Fatalf("kubelet endpoint: %v", err)
	}
}
